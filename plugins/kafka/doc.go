// Package kafka registers the kafka_franz input and output, built on
// github.com/twmb/franz-go, with Benthos' global environment.
//
// The input consumes as a member of a consumer group, or without a group
// from whole topics or explicit partitions. It hands records of a partition
// to the pipeline in offset order and marks an offset only once its message
// and every earlier one of the partition are acknowledged downstream
// (at-least-once): in a group the mark is committed, without one it stays in
// memory. On revocation it waits for the partition's in-flight records before
// committing and letting the partition move, so two members never process one
// partition at the same time. The output acknowledges a message only once
// Kafka acknowledged its record, and reports refused records one by one in a
// service.BatchError.
//
// Files: input_kafka_franz.go (spec, constructor, read loop),
// partition_tracker.go (per-partition batches, acks and the commit mark),
// rebalance.go (group callbacks), lag.go (the lag gauge), topics.go (topic
// and partition selection), client_options.go and sasl.go (connection
// fields shared with output_kafka_franz.go).
//
// Field names and defaults follow Redpanda Connect's kafka_franz components;
// docs/kafka.md lists the differences. The package is not part of
// plugins/all because Redpanda Connect registers components of the same
// name; this distribution's main package imports it.
package kafka
