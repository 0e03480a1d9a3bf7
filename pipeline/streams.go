package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/delivery"
)

// Subject prefixes of the three streams.
const (
	EventsPrefix = catalog.SubjectPrefix
	RoutedPrefix = "routed."
	DLQPrefix    = "dlq."
)

// StreamConfigs returns the configurations of the EVENTS and DLQ streams
// and of the ROUTED stream of each sink named in routed (config.RoutedStream,
// subjects routed.<sink>.>): file storage, limits retention (so replay,
// tail and every sink can read the same messages), the configured max age,
// max bytes, replicas and duplicate windows (routed-duplicates for ROUTED). The ROUTED streams of sinks fed
// by the server get their source from EnsureStreams, which knows where it
// must start.
func StreamConfigs(s config.Streams, routed []string) []jetstream.StreamConfig {
	mk := func(name, subject string, duplicates time.Duration) jetstream.StreamConfig {
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
			Duplicates: duplicates,
		}
	}
	scs := []jetstream.StreamConfig{mk(s.Events, EventsPrefix+">", s.Duplicates.D()), mk(s.DLQ, DLQPrefix+">", s.Duplicates.D())}
	for _, sink := range routed {
		scs = append(scs, mk(s.RoutedStream(sink), RoutedPrefix+sink+".>", s.RoutedDuplicates.D()))
	}
	return scs
}

// EnsureStreams creates the EVENTS and DLQ streams and the ROUTED streams
// of the configuration's sinks and of the sinks named in more (fed by the
// router), or updates them to the configuration. It is idempotent and safe
// to run from every process at once, also on a cluster (see
// retryManagement). Every process that publishes routed copies must ensure
// the streams of the sinks it routes to.
//
// The ROUTED stream of a sink named in [router] server-fan-out also has
// EVENTS as a stream source that renames events.<id> to routed.<sink>.<id>:
// the server copies every event into it, reliably and in order, and the
// sink skips what its rules reject. Its subjects stay open to publishers,
// so replays still write into it. When the source is added to a stream the
// router fed until then, it starts after the router consumer's ack floor:
// nothing is lost, and events the router copied above the floor reach the
// sink twice, which the sink finds by event id. A sink fed by the server
// cannot go back to the router while its stream holds the source: that is
// an error that says what to do.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c *config.Config, more ...string) error {
	var names []string
	server := map[string]bool{}
	for _, spec := range c.SinkSpecs() {
		names = append(names, spec.Name)
		server[spec.Name] = spec.ServerFanOut
	}
	names = append(names, more...)
	sinkOf := map[string]string{} // ROUTED stream -> its sink
	for _, n := range names {
		sinkOf[c.Streams.RoutedStream(n)] = n
	}
	for _, sc := range StreamConfigs(c.Streams, names) {
		sink, routed := sinkOf[sc.Name]
		err := retryManagement(ctx, func(ctx context.Context) error {
			if routed {
				if err := fanOutSource(ctx, js, c, sink, server[sink], &sc); err != nil {
					return err
				}
			}
			_, err := CreateOrUpdateStream(ctx, js, sc)
			return err
		})
		if isAPIError(err, errCodeSubjectsOverlap) {
			err = fmt.Errorf("%w (a stream of an earlier mailtel, %s, may hold every routed.> subject: once its sinks caught up, delete it and start again)", err, c.Streams.Routed)
		}
		if isAPIError(err, errCodeStorageExceeded) && c.Streams.MaxBytes > 0 {
			err = fmt.Errorf("%w: the server reserves [streams] max-bytes (%s) for each stream when it is created, and %d streams (%s, %s and one per sink) do not fit in its storage "+
				"(an embedded server's is 75%% of the free space of [nats] store-dir): lower max-bytes, or free disk space",
				err, c.Streams.MaxBytes, len(names)+2, c.Streams.Events, c.Streams.DLQ)
		}
		if err != nil {
			return fmt.Errorf("create or update stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// fanOutSource sets the sources of sc, the ROUTED stream of sink, from the
// stream as it exists: a server-fed sink keeps its EVENTS source as it is
// (so the server keeps its position), or gets one starting after the
// router consumer's ack floor; a router-fed sink must not have one.
func fanOutSource(ctx context.Context, js jetstream.JetStream, c *config.Config, sink string, server bool, sc *jetstream.StreamConfig) error {
	var current []*jetstream.StreamSource
	st, err := js.Stream(ctx, sc.Name)
	switch {
	case err == nil:
		current = st.CachedInfo().Config.Sources
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("read stream %s: %w", sc.Name, err)
	}
	fromEvents := slices.ContainsFunc(current, func(src *jetstream.StreamSource) bool { return src.Name == c.Streams.Events })
	switch {
	case !server && fromEvents:
		return fmt.Errorf("sink %s is not in [router] server-fan-out, but the server still copies %s into %s: "+
			"put it back, or delete the stream once sink %s caught up (nats stream rm %s) and start again",
			sink, c.Streams.Events, sc.Name, sink, sc.Name)
	case !server:
		sc.Sources = current
		return nil
	case fromEvents:
		sc.Sources = current
		return nil
	}
	var start uint64
	cons, err := js.Consumer(ctx, c.Streams.Events, c.Router.Consumer)
	switch {
	case err == nil:
		start = cons.CachedInfo().AckFloor.Stream + 1
	case !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("read router consumer %s: %w", c.Router.Consumer, err)
	}
	sc.Sources = append(current, &jetstream.StreamSource{
		Name:        c.Streams.Events,
		OptStartSeq: start,
		SubjectTransforms: []jetstream.SubjectTransformConfig{
			{Source: EventsPrefix + ">", Destination: RoutedPrefix + sink + ".>"},
		},
	})
	return nil
}

// CreateOrUpdateStream creates the stream sc or updates it to sc. The server
// cannot create the store of a stream whose directory it is still removing
// (one deleted a moment ago) and answers error 10049: that passes within a
// second, so it is tried again for up to 1.5 s while ctx lasts.
func CreateOrUpdateStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, sc)
	for attempt := 1; attempt <= 5 && isAPIError(err, errCodeStoreCreate); attempt++ {
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
		s, err = js.CreateOrUpdateStream(ctx, sc)
	}
	return s, err
}

// errCodeSubjectsOverlap is the JetStream API error code of "subjects
// overlap with an existing stream".
const errCodeSubjectsOverlap = 10065

// errCodeStoreCreate is the JetStream API error code of "error creating
// store for stream".
const errCodeStoreCreate = 10049

// isAPIError reports whether err is a JetStream API error with this code.
func isAPIError(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// errCodeStorageExceeded is the JetStream API error code of "insufficient
// storage resources available".
const errCodeStorageExceeded = 10047

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
		case <-time.After(delivery.Backoff(attempt, 50*time.Millisecond, time.Second)):
		}
	}
}
