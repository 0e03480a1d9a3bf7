package pipeline

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline/config"
)

// Subject prefixes of the three streams.
const (
	EventsPrefix = "events."
	RoutedPrefix = "routed."
	DLQPrefix    = "dlq."
)

// StreamConfigs returns the configurations of the EVENTS, ROUTED and DLQ
// streams: file storage, limits retention (so replay, tail and every sink
// can read the same messages), the configured max age, max bytes, replicas
// and duplicate window.
func StreamConfigs(s config.Streams) []jetstream.StreamConfig {
	mk := func(name, subject string) jetstream.StreamConfig {
		maxBytes := int64(s.MaxBytes)
		if maxBytes == 0 {
			maxBytes = -1
		}
		return jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{subject},
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			Discard:    jetstream.DiscardOld,
			MaxAge:     s.MaxAge.D(),
			MaxBytes:   maxBytes,
			Replicas:   s.Replicas,
			Duplicates: s.Duplicates.D(),
		}
	}
	return []jetstream.StreamConfig{
		mk(s.Events, EventsPrefix+">"),
		mk(s.Routed, RoutedPrefix+">"),
		mk(s.DLQ, DLQPrefix+">"),
	}
}

// EnsureStreams creates the three streams, or updates them to the
// configuration. It is idempotent and safe to run from every process.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s config.Streams) error {
	for _, sc := range StreamConfigs(s) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("create or update stream %s: %w", sc.Name, err)
		}
	}
	return nil
}
