package sinks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/pipeline/sinks"
	"github.com/mailtel/mailtel/pipeline/synth"
)

// teamReceiver records the events it receives and the X-Team header of
// the requests that carried them.
type teamReceiver struct {
	mu  sync.Mutex
	ids map[string]int
	bad []string // X-Team values other than want
	// want is the X-Team header every request must carry.
	want string
}

func (rc *teamReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	var req struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	if err := json.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if got := r.Header.Get("X-Team"); got != rc.want {
		rc.bad = append(rc.bad, got)
	}
	for _, e := range req.Events {
		rc.ids[e.ID]++
	}
}

func (rc *teamReceiver) count() (events, distinct int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.ids {
		events += n
	}
	return events, len(rc.ids)
}

// TestApplyChangesSinks reloads a running set of sinks: a webhook's URL
// and headers changed (events stored after the reload go to the new
// receiver with the new header, each event to one receiver once), then
// the webhook removed and a log sink added, then a selection that names a
// sink the file no longer has (refused, nothing changes).
func TestApplyChangesSinks(t *testing.T) {
	env := pipelinetest.Start(t)
	a := &teamReceiver{ids: map[string]int{}, want: "a"}
	b := &teamReceiver{ids: map[string]int{}, want: "b"}
	srvA, srvB := httptest.NewServer(a), httptest.NewServer(b)
	defer srvA.Close()
	defer srvB.Close()
	doc := func(url, team string) string {
		return `
[webhook.siem]
url = "` + url + `/hook"
events = ["*"]
throttle = "1ms"
headers = { X-Team = "` + team + `" }
`
	}
	tp := startPipeline(t, env, doc(srvA.URL, "a"))
	set, err := sinks.Start(tp.ctx, tp.P, nil, sinks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := synth.New(synth.Options{Seed: 3, Start: time.Now().Add(-time.Hour)})
	tp.Publish(g, 1000)
	pipelinetest.WaitFor(t, 30*time.Second, "receiver a gets the first 1000 events", func() bool {
		return tp.RouterIdle() && tp.SinkIdle("siem")
	})
	first, _ := a.count()

	parse := func(doc string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		c.NATS = env.NATS
		return c
	}
	changed, err := set.Apply(context.Background(), parse(doc(srvB.URL, "b")))
	if err != nil || changed != "changed siem" {
		t.Fatalf("Apply a new URL and header: %q, %v (want \"changed siem\")", changed, err)
	}
	tp.Publish(g, 1000)
	pipelinetest.WaitFor(t, 60*time.Second, "every event delivered after the reload", func() bool {
		return tp.RouterIdle() && tp.SinkIdle("siem")
	})
	na, da := a.count()
	nb, db := b.count()
	t.Logf("receiver a: %d events (%d before the reload), receiver b: %d", na, first, nb)
	if na != first || nb != 1000 || da != na || db != nb {
		t.Errorf("after the reload receiver a has %d events (%d distinct; %d before), b %d (%d distinct): want a unchanged, b the 1000 new ones once each", na, da, first, nb, db)
	}
	for id := range b.ids {
		if a.ids[id] > 0 {
			t.Errorf("event %s reached both receivers", id)
		}
	}
	if len(a.bad)+len(b.bad) > 0 {
		t.Errorf("requests with the wrong X-Team header: a got %q, b got %q", a.bad, b.bad)
	}

	// Its events changed only: the router's business, the sink runs on.
	changed, err = set.Apply(context.Background(), parse(strings.Replace(doc(srvB.URL, "b"), `events = ["*"]`, `events = ["auth.*"]`, 1)))
	if err != nil || changed != "" {
		t.Errorf("Apply a change of events only: %q, %v (want no sink restarted)", changed, err)
	}

	// The webhook removed, a log sink added.
	dir := t.TempDir()
	logOnly := parse("[tracer.log]\ntype = \"log\"\nlevel = \"info\"\npath = \"" + dir + "\"\n")
	changed, err = set.Apply(context.Background(), logOnly)
	if err != nil || changed != "added log; removed siem" {
		t.Fatalf("Apply a log sink for the webhook: %q, %v (want \"added log; removed siem\")", changed, err)
	}
	pipelinetest.WaitFor(t, 10*time.Second, "/readyz without the removed sink", func() bool {
		resp, err := http.Get("http://" + tp.P.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "siem")
	})

	// A process started with --sink log refuses a file without it.
	tp.P.Config = logOnly // as app's reload does once Apply succeeded
	only, err := sinks.Start(tp.ctx, tp.P, []string{"log"}, sinks.Options{Instance: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := only.Apply(context.Background(), parse(doc(srvB.URL, "b"))); err == nil || !strings.Contains(err.Error(), "no sink named log") {
		t.Errorf("Apply a file without the selected sink: %v, want \"no sink named log\"", err)
	}
	pipelinetest.WaitFor(t, 10*time.Second, "the sinks still ready after the refused reload", func() bool { return tp.P.Health.Ready() == nil })
}
