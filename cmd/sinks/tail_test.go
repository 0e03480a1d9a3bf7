package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
	"github.com/mailtel/mailtel/schema"
)

// tail runs `sinks tail args...` until stop is called, which returns its
// error and what it printed.
func (e *testEnv) tail(args ...string) (out *pipelinetest.SyncBuffer, stop func() (error, string)) {
	ctx, cancel := context.WithCancel(context.Background())
	out = &pipelinetest.SyncBuffer{}
	var errOut pipelinetest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(append([]string{"tail"}, args...), "--config", e.file, "--nats", e.env.NATS.URL), out, &errOut)
	}()
	return out, func() (error, string) {
		cancel()
		select {
		case err := <-done:
			return err, errOut.String()
		case <-time.After(10 * time.Second):
			return fmt.Errorf("tail did not stop within 10s of the cancel"), errOut.String()
		}
	}
}

// TestTailAuth tails events.auth.> from now on, in Stalwart's text format
// and in JSON lines, while mixed events are published: both show all the
// auth.* events and only them; and --level shows only those at or above it.
func TestTailAuth(t *testing.T) {
	e := newTestEnv(t, "[logging]\nlevel = \"error\"\n")
	text, stopText := e.tail("events.auth.>")
	jsonOut, stopJSON := e.tail("--json", "events.auth.>")
	warn, stopWarn := e.tail("events.>", "--level", "warn", "--json")

	// The tails show only what is stored after they start: publish warm-up
	// events until every tail has shown one, then wait for the last ones.
	last := -1
	shown := func(i int) bool {
		return strings.Contains(text.String(), fmt.Sprintf("accountId = %d\n", 900000+i)) &&
			strings.Contains(jsonOut.String(), fmt.Sprintf(`"warm-%d"`, i)) && strings.Contains(warn.String(), fmt.Sprintf(`"warm-err-%d"`, i))
	}
	for i := 0; last < 0 || !anyShown(shown, last); i++ {
		if i == 200 {
			t.Fatal("the tails showed no warm-up event within 10s")
		}
		warm := schema.Event{ID: fmt.Sprintf("warm-%d", i), Type: "auth.success", Fields: []schema.Field{{Key: "accountId", Value: schema.Uint(uint64(900000 + i))}}}
		e.publish(t, []schema.Event{warm, {ID: fmt.Sprintf("warm-err-%d", i), Type: "acme.error"}})
		last = i
		time.Sleep(50 * time.Millisecond)
	}
	pipelinetest.WaitFor(t, 10*time.Second, "the tails show the last warm-up events", func() bool { return shown(last) })
	skipLines := func(s string) int { return strings.Count(s, "\n") }
	textBefore, jsonBefore, warnBefore := skipLines(text.String()), skipLines(jsonOut.String()), skipLines(warn.String())

	evs := events("m", 200) // auth.success, auth.failed, smtp..., delivery..., acme.error in turn
	e.publish(t, evs)
	wantAuth := 80
	pipelinetest.WaitFor(t, 10*time.Second, "tails show the auth events", func() bool {
		return skipLines(text.String())-textBefore >= wantAuth && skipLines(jsonOut.String())-jsonBefore >= wantAuth &&
			skipLines(warn.String())-warnBefore >= 40
	})
	time.Sleep(300 * time.Millisecond) // anything extra shows up now
	for _, stop := range []func() (error, string){stopText, stopJSON, stopWarn} {
		if err, errOut := stop(); err != nil {
			t.Fatalf("tail ended with %v (stderr %q), want nil on cancel", err, errOut)
		}
	}

	// Text: Stalwart's line format, one line per auth event, in order.
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")[textBefore:]
	if len(lines) != wantAuth {
		t.Fatalf("text tail printed %d lines after the warm-up, want %d", len(lines), wantAuth)
	}
	i := 0
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Type, "auth.") {
			continue
		}
		acct, _ := ev.Get("accountId")
		if l := lines[i]; !strings.Contains(l, "("+ev.Type+")") || !strings.HasSuffix(l, fmt.Sprintf("accountId = %d", acct.Uint())) ||
			!strings.HasPrefix(l, "2026-11-21T06:00:00Z ") {
			t.Errorf("line %d = %q, want %s with accountId %d", i, l, ev.Type, acct.Uint())
		}
		i++
	}

	// JSON: exactly the ids of the auth events, in order.
	var want, got []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "auth.") {
			want = append(want, ev.ID)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(jsonOut.String()), "\n")[jsonBefore:] {
		var rec struct{ ID, Type string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got = append(got, rec.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("json tail showed %v, want %v", got, want)
	}

	// --level warn: of these types only acme.error (error) qualifies.
	for _, l := range strings.Split(strings.TrimSpace(warn.String()), "\n")[warnBefore:] {
		var rec struct{ ID, Type, Level string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if rec.Type != "acme.error" || rec.Level != "error" {
			t.Errorf("--level warn showed %+v", rec)
		}
	}
	if n := strings.Count(warn.String(), `"acme.error"`) - warnBefore; n != 40 {
		t.Errorf("--level warn showed %d acme.error events after the warm-up, want 40", n)
	}
}

// TestTailSince shows stored events from a time on, with several subjects
// of one stream.
func TestTailSince(t *testing.T) {
	e := newTestEnv(t, "[logging]\nlevel = \"error\"\n")
	e.publish(t, events("s", 50))
	out, stop := e.tail("--json", "--since", "1h", "events.*.error", "events.smtp.>")
	pipelinetest.WaitFor(t, 10*time.Second, "tail shows stored events", func() bool { return strings.Count(out.String(), "\n") >= 20 })
	time.Sleep(200 * time.Millisecond)
	if err, errOut := stop(); err != nil {
		t.Fatalf("%v %s", err, errOut)
	}
	if c := strings.Count(out.String(), `"type":"acme.error"`) + strings.Count(out.String(), `"type":"smtp.connection-start"`); c != 20 || strings.Count(out.String(), "\n") != 20 {
		t.Errorf("tail --since showed:\n%s", out)
	}
}

func TestTailBadArgs(t *testing.T) {
	dir := t.TempDir()
	e := &testEnv{file: filepath.Join(dir, "mailtel.toml"), env: &pipelinetest.Env{NATS: config.NATS{URL: "nats://127.0.0.1:1"}}}
	os.WriteFile(e.file, nil, 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "give at least one subject, e.g. 'events.auth.>'"},
		{[]string{"events..auth"}, `subject "events..auth": empty token`},
		{[]string{"events.>.auth"}, "'>' must be the last token"},
		{[]string{"events.auth*"}, "'*' and '>' must be whole tokens"},
		{[]string{"events.auth .>"}, "contains whitespace"},
		{[]string{"auth.>"}, `subject "auth.>" is in no mailtel stream: it must start with events., routed. or dlq.`},
		{[]string{"events.auth.>", "routed.siem.>"}, "are in different streams"},
		{[]string{"events.auth.>", "--since", "tomorrow"}, `--since: invalid time "tomorrow"`},
		{[]string{"events.auth.>", "--level", "loud"}, `--level: unknown level "loud"`},
		{[]string{"events.auth.>", "--where", "remoteIp"}, `invalid condition "remoteIp": want key=value or key!=value`},
		{[]string{"events.auth.>", "--where", "=x"}, `invalid condition "=x": no key`},
		{[]string{"events.auth.>", "--until", "soon"}, `--until: invalid time "soon"`},
		{[]string{"events.auth.>", "--since", "1h", "--until", "2h"}, "--until 2h is before --since 1h"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stop := e.tail(tt.args...)
			err, errOut := stop()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (stderr %q), want %q", err, errOut, tt.want)
			}
		})
	}
}

// anyShown reports whether the warm-up events of some round up to last
// have been shown by every tail.
func anyShown(shown func(int) bool, last int) bool {
	for i := 0; i <= last; i++ {
		if shown(i) {
			return true
		}
	}
	return false
}

// tailUntil runs `sinks tail args...`, which must end by itself.
func (e *testEnv) tailUntil(t *testing.T, args ...string) (out, errOut string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var o, eo pipelinetest.SyncBuffer
	err := run(ctx, append(append([]string{"tail"}, args...), "--config", e.file, "--nats", e.env.NATS.URL), &o, &eo)
	if ctx.Err() != nil {
		t.Fatalf("tail %v did not end by itself within 20s (stderr %q)", args, eo.String())
	}
	if err != nil {
		t.Fatalf("tail %v: %v (stderr %q)", args, err, eo.String())
	}
	return o.String(), eo.String()
}

// ids returns the ids of the JSON lines in out, in order.
func ids(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var rec struct{ ID string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got = append(got, rec.ID)
	}
	return got
}

// TestTailUntilWhere reads stored history with --until, which ends by
// itself and prints its counts, filtered by --where: exact values of
// strings, IPs and numbers, globs, negation, envelope fields, and several
// conditions at once.
func TestTailUntilWhere(t *testing.T) {
	e := newTestEnv(t, "[logging]\nlevel = \"error\"\n")
	ips := []string{"203.0.113.7", "198.51.100.2", "2001:db8::1"}
	users := []string{"alice@example.com", "bob@example.org", "carol@example.com", "dave@example.net"}
	evs := events("w", 60)
	for i := range evs {
		evs[i].Fields = append(evs[i].Fields,
			schema.Field{Key: "remoteIp", Value: schema.IP(netip.MustParseAddr(ips[i%len(ips)]))},
			schema.Field{Key: "accountName", Value: schema.String(users[i%len(users)])},
			schema.Field{Key: "elapsed", Value: schema.Duration(time.Duration(i) * time.Millisecond)})
	}
	e.publish(t, evs)
	want := func(keep func(i int, ev schema.Event) bool) []string {
		var w []string
		for i, ev := range evs {
			if keep(i, ev) {
				w = append(w, ev.ID)
			}
		}
		return w
	}
	isAuth := func(ev schema.Event) bool { return strings.HasPrefix(ev.Type, "auth.") }

	t.Run("until", func(t *testing.T) {
		out, errOut := e.tailUntil(t, "events.auth.>", "--json", "--since", "1h", "--until", "0s")
		w := want(func(_ int, ev schema.Event) bool { return isAuth(ev) })
		if got := ids(t, out); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("showed %v, want %v", got, w)
		}
		if wantCounts := fmt.Sprintf("read %d, shown %d, filtered out 0\n", len(w), len(w)); !strings.Contains(errOut, wantCounts) {
			t.Errorf("stderr %q, want the counts %q", errOut, wantCounts)
		}
	})
	t.Run("until before the events", func(t *testing.T) {
		out, errOut := e.tailUntil(t, "events.>", "--json", "--since", "1h", "--until", "30m")
		if out != "" || !strings.Contains(errOut, "read 0, shown 0, filtered out 0") {
			t.Errorf("stdout %q stderr %q, want nothing and zero counts", out, errOut)
		}
	})

	tests := []struct {
		name  string
		where []string
		keep  func(i int, ev schema.Event) bool
	}{
		{"ip", []string{"remoteIp=203.0.113.7"}, func(i int, _ schema.Event) bool { return i%3 == 0 }},
		{"ipv6", []string{"remoteIp=2001:db8::1"}, func(i int, _ schema.Event) bool { return i%3 == 2 }},
		{"number", []string{"accountId=42"}, func(i int, _ schema.Event) bool { return i == 42 }},
		{"duration in ms", []string{"elapsed=7"}, func(i int, _ schema.Event) bool { return i == 7 }},
		{"glob", []string{"accountName=*@example.com"}, func(i int, _ schema.Event) bool { return i%4 == 0 || i%4 == 2 }},
		{"glob ?", []string{"accountName=?ob@*"}, func(i int, _ schema.Event) bool { return i%4 == 1 }},
		{"envelope type", []string{"type=auth.failed"}, func(_ int, ev schema.Event) bool { return ev.Type == "auth.failed" }},
		{"envelope host and source", []string{"host=mx?", "source=stalwart"}, func(int, schema.Event) bool { return true }},
		{"not", []string{"type!=auth.*"}, func(_ int, ev schema.Event) bool { return !isAuth(ev) }},
		{"several", []string{"type=auth.failed", "remoteIp=203.0.113.7", "accountName!=dave@*"},
			func(i int, ev schema.Event) bool { return ev.Type == "auth.failed" && i%3 == 0 && i%4 != 3 }},
		{"missing field", []string{"queueName=*"}, func(int, schema.Event) bool { return false }},
		{"no match", []string{"remoteIp=203.0.113.8"}, func(int, schema.Event) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"events.>", "--json", "--since", "1h", "--until", "0s"}
			for _, w := range tt.where {
				args = append(args, "--where", w)
			}
			out, errOut := e.tailUntil(t, args...)
			w := want(tt.keep)
			if got := ids(t, out); strings.Join(got, ",") != strings.Join(w, ",") {
				t.Errorf("--where %v showed %v, want %v", tt.where, got, w)
			}
			wantCounts := fmt.Sprintf("read %d, shown %d, filtered out %d\n", len(evs), len(w), len(evs)-len(w))
			if !strings.Contains(errOut, wantCounts) {
				t.Errorf("stderr %q, want the counts %q", errOut, wantCounts)
			}
		})
	}
}

// TestTailHelpExamples: --help shows an example of --until and of --where.
func TestTailHelpExamples(t *testing.T) {
	var out, errOut strings.Builder
	run(context.Background(), []string{"tail", "--help"}, &out, &errOut)
	_, ex, ok := strings.Cut(errOut.String(), "Example:")
	if !ok {
		t.Fatalf("tail --help has no example:\n%s", errOut.String())
	}
	for _, want := range []string{"--until 0s", "--where remoteIp=203.0.113.7", "--where 'accountName=*@example.com'"} {
		if !strings.Contains(ex, want) {
			t.Errorf("tail --help example lacks %q:\n%s", want, ex)
		}
	}
}
