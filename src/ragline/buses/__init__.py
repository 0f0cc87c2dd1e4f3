"""Bus adapters: in-process queues and Kafka."""
