package amplitude
