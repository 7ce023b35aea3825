package kafka
