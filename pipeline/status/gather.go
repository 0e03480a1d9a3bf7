package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/config/value"
)

// Options say what a Gatherer reads.
type Options struct {
	// Streams are the stream names ([streams] events, routed, dlq).
	Streams config.Streams
	// RouterConsumer is the routers' durable consumer on EVENTS ([router]
	// consumer).
	RouterConsumer string
	// Sinks are the sinks the configuration names. The sinks of every
	// ROUTED_<name> stream found are shown too, so a configuration with
	// [nats] only shows every sink of the deployment.
	Sinks []string
	// Endpoints are host:port (or http:// URLs) of processes' /metrics
	// and /readyz, asked at every Gather; those that do not answer are
	// listed as such.
	Endpoints []string
	// Client asks the endpoints (default: a client with a 1s timeout).
	Client *http.Client
	// StaleAfter is how long a consumer with no pull request waiting may
	// have delivered nothing before it counts as not running (default
	// 30s; the mailtel processes renew their pull requests every 5s).
	StaleAfter time.Duration
	// Now returns the time (default time.Now).
	Now func() time.Time
}

// Gatherer reads the status of a pipeline. Each Gather also computes
// rates against the previous Gather of the same Gatherer. It is not safe
// for concurrent use.
type Gatherer struct {
	js   jetstream.JetStream
	opts Options
	prev map[string]sample // by stream/consumer
	// last is when the previous Gather started.
	last time.Time
}

// sample is how many messages a consumer acked, at a time.
type sample struct {
	value float64
	at    time.Time
}

// NewGatherer returns a Gatherer that reads through js.
func NewGatherer(js jetstream.JetStream, o Options) *Gatherer {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: time.Second}
	}
	if o.StaleAfter == 0 {
		o.StaleAfter = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Gatherer{js: js, opts: o, prev: map[string]sample{}}
}

// OptionsFrom returns the options of a configuration: its stream names,
// router consumer, sinks, and the [router] http and [sinks] http
// endpoints.
func OptionsFrom(c *config.Config) Options {
	o := Options{Streams: c.Streams, RouterConsumer: c.Router.Consumer, Sinks: c.SinkNames()}
	for _, a := range []string{c.Router.HTTP, c.Sinks.HTTP} {
		if a != "" && !slices.Contains(o.Endpoints, a) {
			o.Endpoints = append(o.Endpoints, a)
		}
	}
	return o
}

// Gather reads the status. It returns an error only when JetStream does
// not answer; streams and consumers that do not exist are reported as such,
// and endpoints that do not answer are listed with the error.
func (g *Gatherer) Gather(ctx context.Context) (*Status, error) {
	now := g.opts.Now()
	st := &Status{Time: now.UTC()}
	if !g.last.IsZero() && now.After(g.last) {
		st.RateInterval = Duration(now.Sub(g.last).Round(10 * time.Millisecond))
	}
	g.last = now
	if nc := g.js.Conn(); nc != nil {
		st.Server = value.RedactURL(nc.ConnectedUrl())
	}

	// The endpoints are asked while JetStream is read.
	var view metricsView
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		view, st.Endpoints = scrapeAll(ctx, g.opts.Client, g.opts.Endpoints)
	}()
	defer wg.Wait()

	infos := map[string]*jetstream.StreamInfo{}
	lister := g.js.ListStreams(ctx)
	for si := range lister.Info() {
		infos[si.Config.Name] = si
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}

	s := g.opts.Streams
	routedPrefix := s.Routed + "_"
	sinks := slices.Clone(g.opts.Sinks)
	for name := range infos {
		if sink, ok := strings.CutPrefix(name, routedPrefix); ok && sink != "" && !slices.Contains(sinks, sink) {
			sinks = append(sinks, sink)
		}
	}
	sort.Strings(sinks)
	streams := []string{s.Events}
	for _, sink := range sinks {
		streams = append(streams, s.RoutedStream(sink))
	}
	streams = append(streams, s.DLQ)

	consumers := map[string]*Consumer{} // by stream/name
	for _, name := range streams {
		si := infos[name]
		if si == nil {
			st.Streams = append(st.Streams, Stream{Name: name, Missing: true})
			continue
		}
		row, err := g.stream(ctx, si, now)
		if err != nil {
			return nil, err
		}
		st.Streams = append(st.Streams, row)
		cs, err := g.consumers(ctx, name, now)
		if err != nil {
			return nil, err
		}
		for i := range cs {
			consumers[name+"/"+cs[i].Name] = &cs[i]
		}
	}

	// Consumers: the router's first (reported also when missing), then
	// those of the sinks, then any other durable, by stream and name.
	router := consumers[s.Events+"/"+g.opts.RouterConsumer]
	if router == nil && infos[s.Events] != nil {
		router = &Consumer{Stream: s.Events, Name: g.opts.RouterConsumer, State: StateNoConsumer}
	}
	if router != nil {
		st.Consumers = append(st.Consumers, *router)
		delete(consumers, s.Events+"/"+g.opts.RouterConsumer)
	}
	var sinkCons []*Consumer
	for _, sink := range sinks {
		key := s.RoutedStream(sink) + "/" + pipeline.SinkConsumerName(sink)
		c := consumers[key]
		if c != nil {
			c.Sink = sink
			st.Consumers = append(st.Consumers, *c)
			delete(consumers, key)
		}
		sinkCons = append(sinkCons, c)
	}
	rest := make([]string, 0, len(consumers))
	for k := range consumers {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		st.Consumers = append(st.Consumers, *consumers[k])
	}

	dead, err := g.deadLetters(ctx, infos[s.DLQ])
	if err != nil {
		return nil, err
	}
	st.DeadLetters = dead

	wg.Wait()
	for i, sink := range sinks {
		si := infos[s.RoutedStream(sink)]
		row := Sink{Name: sink}
		for _, d := range dead {
			if d.Stage == "sink."+sink {
				row.DeadLetters = d.Count
			}
		}
		if si != nil {
			row.FedBy = "router"
			if slices.ContainsFunc(si.Config.Sources, func(src *jetstream.StreamSource) bool { return src.Name == s.Events }) {
				row.FedBy = "server"
			}
		}
		switch c := sinkCons[i]; {
		case c != nil:
			row.Behind = c.Pending + uint64(c.AckPending)
			row.Rate = c.Rate
		case si != nil:
			row.Behind = si.State.Msgs // a new consumer starts at the first message
		}
		if w, ok := view.written[sink]; ok {
			row.Written = &w
		}
		row.State, row.Reason = sinkState(si != nil, sinkCons[i], view, sink)
		st.Sinks = append(st.Sinks, row)
	}
	// A sink's consumer takes the sink's state: a paused sink pulls nothing
	// while it probes its destination, and is not "not running".
	for i := range st.Consumers {
		for _, k := range st.Sinks {
			if c := &st.Consumers[i]; c.Sink == k.Name {
				c.State = k.State
			}
		}
	}
	return st, nil
}

// sinkState says what state a sink is in, from its stream, its consumer
// and what the metrics endpoints say.
func sinkState(stream bool, c *Consumer, v metricsView, sink string) (string, string) {
	switch {
	case !stream:
		return StateNoStream, "its ROUTED stream does not exist: no process with a configuration naming the sink has started"
	case c == nil:
		return StateNoConsumer, "no sinks process has read its stream yet"
	case v.degraded[sink] != "":
		return StatePaused, v.degraded[sink]
	case v.up[sink] != nil && *v.up[sink] == 0:
		return StatePaused, "mailtel_sink_up is 0: its destination fails"
	case v.notReady[sink] != "":
		return StateNotReady, v.notReady[sink]
	case c.State == StateNotRunning:
		return StateNotRunning, "no pull request waiting and nothing delivered lately: no sinks process reads it, or one is paused"
	}
	return StateUp, ""
}

// stream reads one stream's row, with the estimate of its duplicate
// window.
func (g *Gatherer) stream(ctx context.Context, si *jetstream.StreamInfo, now time.Time) (Stream, error) {
	row := Stream{Name: si.Config.Name, Messages: si.State.Msgs, Bytes: si.State.Bytes, Duplicates: Duration(si.Config.Duplicates)}
	if si.State.Msgs > 0 {
		first, last := si.State.FirstTime.UTC(), si.State.LastTime.UTC()
		row.First, row.Last = &first, &last
	}
	ids, err := g.idsInWindow(ctx, si, now)
	if err != nil {
		return row, fmt.Errorf("stream %s: duplicate window: %w", si.Config.Name, err)
	}
	row.WindowIDs, row.WindowBytes = ids, ids*BytesPerID
	return row, nil
}

// idsInWindow estimates how many message ids the server holds for the
// stream's duplicate window: the number of messages stored since
// now - window (mailtel sets Nats-Msg-Id on every message it stores, and
// the server forgets an id once it is older than the window).
//
// Method: when its last message is older than the window, none counts.
// When every stored message is within the window, they all count, and so
// do the messages the stream's limits deleted before them (max-bytes,
// max-msgs) since the window began: the server keeps a message's id for
// the whole window whether the message is still stored or not. Their
// number is estimated at the rate of the stored ones, and at most all the
// sequences before the first stored one (a young stream has none).
// Otherwise one
// request to the stream message get API ($JS.API.STREAM.MSG.GET.<stream>)
// with start_time = now - window and next_by_subj ">": the server finds
// the first sequence at or after that time by a binary search of its
// blocks (the lookup a consumer with DeliverByStartTime makes) and returns
// the first message from there; the count is the last sequence less that
// one, plus one. Messages deleted inside the window (a DLQ redrive) still
// count, which overestimates a little; a server older than 2.11, which
// ignores start_time, answers with the first message and makes it the
// whole stream.
func (g *Gatherer) idsInWindow(ctx context.Context, si *jetstream.StreamInfo, now time.Time) (uint64, error) {
	w, state := si.Config.Duplicates, si.State
	if w <= 0 || state.Msgs == 0 {
		return 0, nil
	}
	from := now.Add(-w)
	switch {
	case state.LastTime.Before(from):
		return 0, nil
	case !state.FirstTime.Before(from):
		ids := state.LastSeq - state.FirstSeq + 1
		if span := state.LastTime.Sub(state.FirstTime); state.FirstSeq > 1 && span > 0 {
			rate := float64(ids) / span.Seconds()
			ids += min(uint64(rate*state.FirstTime.Sub(from).Seconds()), state.FirstSeq-1)
		}
		return ids, nil
	}
	req, _ := json.Marshal(struct {
		StartTime time.Time `json:"start_time"`
		NextFor   string    `json:"next_by_subj"`
		NoHeaders bool      `json:"no_hdr"`
	}{from.UTC(), ">", true})
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := g.js.Conn().RequestWithContext(rctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+si.Config.Name, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("read message get answer: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == errCodeNoMessageFound:
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("message get: %s (%d)", resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil || resp.Message.Seq > state.LastSeq:
		return 0, nil
	}
	return state.LastSeq - resp.Message.Seq + 1, nil
}

// errCodeNoMessageFound is JetStream's "no message found" error code.
const errCodeNoMessageFound = 10037

// consumers reads the durable consumers of a stream, with their states
// and rates.
func (g *Gatherer) consumers(ctx context.Context, stream string, now time.Time) ([]Consumer, error) {
	s, err := g.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // deleted since it was listed
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	var out []Consumer
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue // ephemeral: replays, tails
		}
		c := Consumer{Stream: stream, Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending,
			Redelivered: ci.NumRedelivered, Waiting: ci.NumWaiting, AckFloor: ci.AckFloor.Stream, State: StateUp}
		var last time.Time
		for _, t := range []*time.Time{ci.Delivered.Last, ci.AckFloor.Last} {
			if t != nil && t.After(last) {
				last = *t
			}
		}
		if !last.IsZero() {
			l := last.UTC()
			c.LastActive = &l
		}
		at := ci.TimeStamp // the server's clock, when it sent the information
		if at.IsZero() {
			at = now
		}
		if c.Waiting == 0 && (last.IsZero() || at.Sub(last) > g.opts.StaleAfter) {
			c.State = StateNotRunning
		}
		// Messages acked: the last stream sequence delivered less those
		// delivered and not acked, for a consumer whose filter is its
		// stream's whole subject space (the router's and the sinks'). It
		// moves with every ack, where the ack floor moves by whole batches
		// once the oldest message of one is acked.
		acked := ci.Delivered.Stream - min(ci.Delivered.Stream, uint64(ci.NumAckPending))
		c.Rate = g.rate(stream+"/"+ci.Name, float64(acked), at)
		out = append(out, c)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", stream, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// rate records value at time at under key and returns its progress per
// second since the previous record (nil for the first, or when the value
// went back: a consumer created again).
func (g *Gatherer) rate(key string, value float64, at time.Time) *float64 {
	prev, ok := g.prev[key]
	g.prev[key] = sample{value, at}
	d := at.Sub(prev.at)
	if !ok || d <= 0 || value < prev.value {
		return nil
	}
	r := (value - prev.value) / d.Seconds()
	return &r
}

// deadLetters counts the DLQ stream's messages per stage from the
// stream's per-subject counts (one stream info request with a subject
// filter): dlq.ingest.> is "ingest", dlq.router.> "router",
// dlq.sink.<name>.> "sink.<name>".
func (g *Gatherer) deadLetters(ctx context.Context, si *jetstream.StreamInfo) ([]DeadLetters, error) {
	if si == nil || si.State.Msgs == 0 {
		return nil, nil
	}
	s, err := g.js.Stream(ctx, si.Config.Name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", si.Config.Name, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(pipeline.DLQPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("count dead letters in %s: %w", si.Config.Name, err)
	}
	by := map[string]uint64{}
	for subject, n := range info.State.Subjects {
		by[Stage(subject)] += n
	}
	out := make([]DeadLetters, 0, len(by))
	for stage, n := range by {
		out = append(out, DeadLetters{Stage: stage, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out, nil
}

// Stage returns the stage of a dead letter's subject: "sink.<name>" for
// dlq.sink.<name>.>, else the token after "dlq." ("ingest", "router").
func Stage(subject string) string {
	rest := strings.TrimPrefix(subject, pipeline.DLQPrefix)
	tokens := strings.SplitN(rest, ".", 3)
	if tokens[0] == "sink" && len(tokens) > 1 {
		return "sink." + tokens[1]
	}
	return tokens[0]
}
