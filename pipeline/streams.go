package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline/config"
)

// Subject prefixes of the three streams.
const (
	EventsPrefix = "events."
	RoutedPrefix = "routed."
	DLQPrefix    = "dlq."
)

// StreamConfigs returns the configurations of the EVENTS and DLQ streams
// and of the ROUTED stream of each of sinks (config.RoutedStream, subjects
// routed.<sink>.>): file storage, limits retention (so replay, tail and
// every sink can read the same messages), the configured max age, max
// bytes, replicas and duplicate window.
func StreamConfigs(s config.Streams, sinks []string) []jetstream.StreamConfig {
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
	scs := []jetstream.StreamConfig{mk(s.Events, EventsPrefix+">"), mk(s.DLQ, DLQPrefix+">")}
	for _, sink := range sinks {
		scs = append(scs, mk(s.RoutedStream(sink), RoutedPrefix+sink+".>"))
	}
	return scs
}

// EnsureStreams creates the EVENTS and DLQ streams and the ROUTED streams
// of sinks, or updates them to the configuration. It is idempotent and safe
// to run from every process at once, also on a cluster (see
// retryManagement). Every process that publishes routed copies must ensure
// the streams of the sinks it routes to.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s config.Streams, sinks []string) error {
	for _, sc := range StreamConfigs(s, sinks) {
		err := retryManagement(ctx, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectsOverlap {
			err = fmt.Errorf("%w (a stream of an earlier mailtel, %s, may hold every routed.> subject: once its sinks caught up, delete it and start again)", err, s.Routed)
		}
		if err != nil {
			return fmt.Errorf("create or update stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// errCodeSubjectsOverlap is the JetStream API error code of "subjects
// overlap with an existing stream".
const errCodeSubjectsOverlap = 10065

// managementAttempt bounds one JetStream management request (stream or
// consumer create-or-update) made by retryManagement.
const managementAttempt = 3 * time.Second

// retryManagement runs a JetStream management request f, each attempt with
// its own deadline of managementAttempt, and tries again while the attempt
// timed out and ctx has not ended. On a cluster, when several processes
// create the same stream or consumer at the same moment, the server may
// leave all but one request unanswered; the next attempt finds the stream
// or consumer and updates it to the same configuration, which is answered.
// Any other error is returned at once.
func retryManagement(ctx context.Context, f func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, managementAttempt)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(Backoff(attempt, 50*time.Millisecond, time.Second)):
		}
	}
}
