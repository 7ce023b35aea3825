package avroscan
