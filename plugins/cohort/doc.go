package cohort
