package sinks_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/synth"
)

// TestEachSeriesOnOneEndpoint: a Prometheus that scrapes both of the sinks
// process's endpoints, its /metrics and the metrics sink's listen, must
// find every series on one of them only, or every sum counts it twice.
func TestEachSeriesOnOneEndpoint(t *testing.T) {
	env := pipelinetest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	tp := startPipeline(t, env, "[metrics.prometheus]\nenable = true\nlisten = \""+listen+"\"\n")
	tp.StartSinks()
	p := tp.P
	tp.Publish(synth.New(synth.Options{Seed: 1}), 200)

	scrape := func(addr string) string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	pipelinetest.WaitFor(t, 20*time.Second, "the metrics sink counts the events", func() bool {
		return strings.Contains(scrape(listen), "mailtel_events_total{")
	})
	process, events := scrape(p.HTTPAddr), scrape(listen)
	series := func(text string) map[string]bool {
		out := map[string]bool{}
		for _, line := range strings.Split(text, "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name, _, _ := strings.Cut(line, " ")
			name, _, _ = strings.Cut(name, "{")
			out[name] = true
		}
		return out
	}
	ps, es := series(process), series(events)
	for name := range es {
		if ps[name] {
			t.Errorf("%s is served on both the process's /metrics and the metrics sink's listen", name)
		}
	}
	for _, want := range []string{"mailtel_events_total"} {
		if !es[want] || ps[want] {
			t.Errorf("%s: on the metrics sink's listen %v, on the process's /metrics %v; want only the first", want, es[want], ps[want])
		}
	}
	for _, want := range []string{"mailtel_written_total", "mailtel_sink_up"} {
		if !ps[want] || es[want] {
			t.Errorf("%s: on the process's /metrics %v, on the metrics sink's listen %v; want only the first", want, ps[want], es[want])
		}
	}
}
