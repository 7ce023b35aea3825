// Package kafka registers the kafka_franz input and output, built on
// github.com/twmb/franz-go, with Benthos' global environment.
//
// The input consumes as a member of a consumer group, hands records of a
// partition to the pipeline in offset order and commits an offset only once
// its message and every earlier one of the partition are acknowledged
// downstream (at-least-once). On revocation it waits for the partition's
// in-flight records before committing and letting the partition move, so two
// members never process one partition at the same time. The output
// acknowledges a message only once Kafka acknowledged its record, and reports
// refused records one by one in a service.BatchError.
//
// Field names follow Redpanda Connect's kafka_franz components. The package
// is not part of plugins/all because Redpanda Connect registers components of
// the same name; this distribution's main package imports it.
package kafka
