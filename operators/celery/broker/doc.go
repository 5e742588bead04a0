// Package broker reads how much work waits in a Celery broker, for the
// CeleryCluster autoscaler: per queue, the messages ready for a worker
// and those a worker has taken but not acknowledged yet.
//
// What each broker mode sees:
//
//   - Redis (redis://, rediss://). A Celery queue q is the list q, and with
//     message priorities also the lists "q\x06\x16<p>" for p in 1..9 (kombu's
//     priority separator); ready is the sum of their lengths. Messages a
//     worker has reserved (prefetch, acks_late) leave the lists for the
//     hash "unacked" shared by all queues; they are counted per queue from
//     the routing key stored in each entry. Without that, a cluster whose
//     workers prefetch looks idle while it is busy (the KEDA outage of
//     mitodl/ol-infrastructure PR 5598).
//   - RabbitMQ (amqp://, amqps://). ready is the queue's ready-message
//     count from a passive queue declare. Unacknowledged messages are not
//     visible over AMQP; with a management API URL they are read from it
//     (messages_unacknowledged), otherwise they count as 0 and Backlog
//     says so in UnackedKnown.
//
// A queue that does not exist yet (no task sent, no worker started) has
// no backlog. Errors never carry the broker's password.
package broker
