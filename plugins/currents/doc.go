package currents
