package ingest_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/ingest"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// serve runs the ingest server of cfg on 127.0.0.1 (as `publisher ingest`
// does) against a real embedded NATS server, until the test ends, and
// returns its address.
func serve(t *testing.T, cfg config.Publisher) (string, *pipelinetest.Env, *config.Config) {
	t.Helper()
	_, addr, env, c := serveHandler(t, cfg)
	return addr, env, c
}

// serveHandler is serve, returning the handler too.
func serveHandler(t *testing.T, cfg config.Publisher) (*ingest.Handler, string, *pipelinetest.Env, *config.Config) {
	t.Helper()
	env, c, pub := setup(t)
	h := ingest.NewHandler(pub, env.JS, cfg, zerolog.Nop(), obs.NewMetrics())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h, ln.Addr().String(), env, c
}

// rawRequest is a request written by hand on a connection of its own:
// headers, then the first bytes of the body.
func rawRequest(t *testing.T, addr, path string, headers map[string]string, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, addr)
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readAnswer reads one response from conn within d.
func readAnswer(t *testing.T, conn net.Conn, br *bufio.Reader, d time.Duration) (*http.Response, answer) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", resp.Status, err)
	}
	return resp, a
}

// closedWithin waits until the server closes conn, reading (and dropping)
// what it sends, and returns how long that took.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	conn.SetReadDeadline(began.Add(d))
	_, err := io.Copy(io.Discard, conn)
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		t.Fatalf("the connection is still open after %v", d)
	}
	return time.Since(began)
}

const eightMB = "8000000"

// TestAuthBeforeBody: a request that announces 8 MB and sends 100 bytes of
// it is answered 401 at once, without the server waiting for the rest,
// and the connection is closed.
func TestAuthBeforeBody(t *testing.T) {
	cfg := pubConfig()
	cfg.Token = "t0ken"
	addr, _, _ := serve(t, cfg)
	sigCfg := pubConfig()
	sigCfg.SignatureKey = "k3y"
	sigAddr, _, _ := serve(t, sigCfg)
	for _, tc := range []struct {
		name, addr string
		headers    map[string]string
	}{
		{"no credentials", addr, map[string]string{}},
		{"wrong token", addr, map[string]string{"Authorization": "Bearer nope"}},
		{"wrong scheme", addr, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("u:t0ken"))}},
		{"signature key, no X-Signature", sigAddr, map[string]string{}},
		{"signature key, X-Signature not base64", sigAddr, map[string]string{"X-Signature": "%%%"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.headers["Content-Type"] = "application/json"
			tc.headers["Content-Length"] = eightMB
			began := time.Now()
			conn := rawRequest(t, tc.addr, ingest.PathStalwart, tc.headers, `{"events":[`+strings.Repeat(" ", 89))
			resp, a := readAnswer(t, conn, bufio.NewReader(conn), time.Second)
			if resp.StatusCode != http.StatusUnauthorized || a.Error == "" {
				t.Errorf("%s %+v, want 401 with a reason", resp.Status, a)
			}
			if took := time.Since(began); took > time.Second {
				t.Errorf("answered after %v", took)
			}
			if !resp.Close {
				t.Error("the connection is kept open, for a body nobody reads")
			}
			closedWithin(t, conn, 2*time.Second)
		})
	}
}

// TestContentType: only application/json is taken, so that a web page
// cannot post to a loopback ingest without authentication (a browser
// sends text/plain and forms to other origins without asking first).
func TestContentType(t *testing.T) {
	addr, _, _ := serve(t, pubConfig()) // loopback, no auth
	body := batchOf(stalwartEvent("ct1", 1, 10))
	for _, tc := range []struct {
		contentType string
		status      int
	}{
		{"text/plain", 415},
		{"text/plain;charset=UTF-8", 415},
		{"application/x-www-form-urlencoded", 415},
		{"multipart/form-data; boundary=x", 415},
		{"", 415},
		{"application/jsonx", 415},
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{"Application/JSON ; charset=UTF-8", 200},
	} {
		t.Run(tc.contentType, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+addr+ingest.PathStalwart, strings.NewReader(body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var a answer
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
				t.Fatalf("answer is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || (tc.status == 415 && !strings.Contains(a.Error, "application/json")) {
				t.Errorf("%s %+v, want %d", resp.Status, a, tc.status)
			}
		})
	}
}

// TestAuthSchemes: auth schemes are case-insensitive.
func TestAuthSchemes(t *testing.T) {
	cfg := pubConfig()
	cfg.Token = "t0ken"
	cfg.User, cfg.Password = "stalwart", "pa55"
	addr, _, _ := serve(t, cfg)
	basic := base64.StdEncoding.EncodeToString([]byte("stalwart:pa55"))
	for i, tc := range []struct {
		auth   string
		status int
	}{
		{"Bearer t0ken", 200},
		{"bearer t0ken", 200},
		{"BEARER t0ken", 200},
		{"Basic " + basic, 200},
		{"BASIC " + basic, 200},
		{"basic " + basic, 200},
		{"bearer t0ken2", 401},
		{"bearer", 401},
		{"t0ken", 401},
		{"basic " + base64.StdEncoding.EncodeToString([]byte("stalwart:pa56")), 401},
		{"Bearer " + basic, 401},
	} {
		req, _ := http.NewRequest("POST", "http://"+addr+ingest.PathStalwart, strings.NewReader(batchOf(stalwartEvent(fmt.Sprintf("auth%d", i), 1, 10))))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", tc.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("Authorization: %s: %s, want %d", tc.auth, resp.Status, tc.status)
		}
	}
}

// TestSetCredentials: after a reload of the credentials, requests with the
// old ones are refused and requests with the new ones stored; a signature
// key added by the reload is required from then on.
func TestSetCredentials(t *testing.T) {
	cfg := pubConfig()
	cfg.Token = "old-token"
	h, addr, _, _ := serveHandler(t, cfg)
	post := func(auth, signature string) int {
		t.Helper()
		body := batchOf(stalwartEvent("cred"+auth+signature, 1, 10))
		req, _ := http.NewRequest("POST", "http://"+addr+ingest.PathStalwart, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		if signature != "" {
			mac := hmac.New(sha256.New, []byte(signature))
			mac.Write([]byte(body))
			req.Header.Set("X-Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("Bearer old-token", ""); got != 200 {
		t.Fatalf("before the reload, the old token: %d", got)
	}
	next := cfg
	next.Token, next.SignatureKey = "new-token", "sig-key"
	if !h.SetCredentials(next) {
		t.Error("SetCredentials with a new token reported no change")
	}
	if h.SetCredentials(next) {
		t.Error("SetCredentials with the same credentials reported a change")
	}
	for _, tc := range []struct {
		auth, sig string
		want      int
	}{
		{"Bearer old-token", "sig-key", 401},
		{"Bearer new-token", "", 401},
		{"Bearer new-token", "other-key", 401},
		{"Bearer new-token", "sig-key", 200},
	} {
		if got := post(tc.auth, tc.sig); got != tc.want {
			t.Errorf("after the reload, %q signed with %q: %d, want %d", tc.auth, tc.sig, got, tc.want)
		}
	}
}

// TestServerTimeouts: a connection that sends its body too slowly is
// closed within the read timeout, an idle keep-alive connection within the
// idle timeout.
func TestServerTimeouts(t *testing.T) {
	cfg := pubConfig()
	cfg.ReadTimeout = config.Duration(500 * time.Millisecond)
	cfg.WriteTimeout = config.Duration(2 * time.Second)
	cfg.IdleTimeout = config.Duration(700 * time.Millisecond)
	addr, _, _ := serve(t, cfg)

	t.Run("slow body", func(t *testing.T) {
		began := time.Now()
		conn := rawRequest(t, addr, ingest.PathStalwart, map[string]string{"Content-Type": "application/json", "Content-Length": "1000"}, "{")
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte every 200ms
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		br := bufio.NewReader(conn)
		resp, a := readAnswer(t, conn, br, 2*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(a.Error, "read timeout") {
			t.Errorf("%s %+v, want 408", resp.Status, a)
		}
		closedWithin(t, conn, 2*time.Second)
		if took := time.Since(began); took > 500*time.Millisecond+time.Second {
			t.Errorf("closed after %v, with a read timeout of 500ms", took)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		body := batchOf(stalwartEvent("idle1", 1, 10))
		conn := rawRequest(t, addr, ingest.PathStalwart, map[string]string{"Content-Type": "application/json", "Content-Length": fmt.Sprint(len(body))}, body)
		resp, a := readAnswer(t, conn, bufio.NewReader(conn), 2*time.Second)
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%s %+v close=%v, want 200 on a kept connection", resp.Status, a, resp.Close)
		}
		if took := closedWithin(t, conn, 3*time.Second); took > 700*time.Millisecond+time.Second {
			t.Errorf("idle connection closed after %v, with an idle timeout of 700ms", took)
		}
	})

	t.Run("headers only", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST "+ingest.PathStalwart+" HTTP/1.1\r\nHost: x\r\n") // and nothing more
		if took := closedWithin(t, conn, 3*time.Second); took > 500*time.Millisecond+time.Second {
			t.Errorf("closed after %v", took)
		}
	})
}

// TestMaxInFlightBytes: with a cap that holds one request of max-body, a
// second large request while the first is being read is answered 503 with
// Retry-After: 1, without its body being read; once the first is
// answered, its bytes are free again.
func TestMaxInFlightBytes(t *testing.T) {
	cfg := pubConfig()
	cfg.Token = "t0ken"
	cfg.MaxBody = 1 << 20
	cfg.MaxInFlightBytes = 1<<20 + ingest.RequestOverhead
	addr, _, _ := serve(t, cfg)
	hdr := func(n int) map[string]string {
		return map[string]string{"Content-Type": "application/json", "Authorization": "Bearer t0ken", "Content-Length": fmt.Sprint(n)}
	}
	event := stalwartEvent("cap1", 1, 10)
	body := batchOf(event) + strings.Repeat(" ", 1<<20-len(batchOf(event)))
	first := rawRequest(t, addr, ingest.PathStalwart, hdr(len(body)), body[:1000]) // and stalls
	time.Sleep(200 * time.Millisecond)                                             // the first is being read

	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"Content-Length", hdr(len(body))},
		{"chunked, which may grow to max-body", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer t0ken", "Transfer-Encoding": "chunked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			conn := rawRequest(t, addr, ingest.PathStalwart, tc.headers, "")
			if tc.headers["Transfer-Encoding"] == "" {
				io.WriteString(conn, body[:100]) // and stalls
			}
			resp, a := readAnswer(t, conn, bufio.NewReader(conn), time.Second)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(a.Error, "max-in-flight-bytes") {
				t.Errorf("%s Retry-After %q %+v, want 503, Retry-After: 1", resp.Status, resp.Header.Get("Retry-After"), a)
			}
			if took := time.Since(began); took > time.Second || !resp.Close {
				t.Errorf("answered after %v, close=%v", took, resp.Close)
			}
		})
	}

	// A small request does not fit either: the first holds the whole cap.
	small := batchOf(stalwartEvent("cap2", 1, 10))
	conn := rawRequest(t, addr, ingest.PathStalwart, hdr(len(small)), small)
	if resp, a := readAnswer(t, conn, bufio.NewReader(conn), time.Second); resp.StatusCode != 503 {
		t.Errorf("small request: %s %+v, want 503", resp.Status, a)
	}

	// The first one finishes and is stored; then the cap is free again.
	io.WriteString(first, body[1000:])
	if resp, a := readAnswer(t, first, bufio.NewReader(first), 5*time.Second); resp.StatusCode != 200 || a.Accepted != 1 {
		t.Fatalf("first request: %s %+v", resp.Status, a)
	}
	conn = rawRequest(t, addr, ingest.PathStalwart, hdr(len(small)), small)
	if resp, a := readAnswer(t, conn, bufio.NewReader(conn), 5*time.Second); resp.StatusCode != 200 || a.Accepted != 1 {
		t.Errorf("after the first: %s %+v, want 200", resp.Status, a)
	}
}

// TestTooLargeBeforeBody: a Content-Length over max-body is answered 413
// before the body is read.
func TestTooLargeBeforeBody(t *testing.T) {
	cfg := pubConfig()
	cfg.MaxBody = 1 << 20
	addr, _, _ := serve(t, cfg)
	conn := rawRequest(t, addr, ingest.PathStalwart, map[string]string{"Content-Type": "application/json", "Content-Length": eightMB}, "{")
	resp, a := readAnswer(t, conn, bufio.NewReader(conn), time.Second)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(a.Error, "max-body") || !resp.Close {
		t.Errorf("%s %+v close=%v, want 413", resp.Status, a, resp.Close)
	}
}

// TestSenders posts what Stalwart's webhook and Dovecot's event_exporter
// send, with their headers: Content-Type: application/json (Stalwart
// sets it on every webhook request, with basic auth from its
// auth.username/auth.secret and X-Signature with signature-key; Dovecot's
// http-post transport sets the format's type, application/json for
// format = json, and basic auth from the user:password@ of its URL).
func TestSenders(t *testing.T) {
	cfg := pubConfig()
	cfg.User, cfg.Password = "stalwart", "pa55"
	cfg.SignatureKey = "k3y"
	addr, env, c := serve(t, cfg)
	dovecotCfg := pubConfig() // Dovecot cannot sign
	dovecotCfg.User, dovecotCfg.Password = "dovecot", "pa55"
	dovecotAddr, _, _ := serve(t, dovecotCfg)

	var events []string
	for _, name := range []string{"auth-success", "arrays", "caused-by-nested", "unicode"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "schema", "testdata", "stalwart", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, string(data))
	}
	body := batchOf(events...)
	mac := hmac.New(sha256.New, []byte("k3y"))
	mac.Write([]byte(body))
	req, _ := http.NewRequest("POST", "http://"+addr+ingest.PathStalwart, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("stalwart:pa55")))
	req.Header.Set("X-Signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if resp.StatusCode != 200 || a.Accepted != len(events) {
		t.Errorf("stalwart: %s %+v", resp.Status, a)
	}

	files, _ := filepath.Glob(filepath.Join("..", "..", "schema", "testdata", "dovecot", "*.json"))
	if len(files) == 0 {
		t.Fatal("no Dovecot fixtures")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "http://dovecot:pa55@"+dovecotAddr+ingest.PathDovecot, strings.NewReader(string(data)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req) // basic auth from the URL, as Dovecot's client does
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != 200 || a.Accepted != 1 {
			t.Errorf("dovecot %s: %s %+v", filepath.Base(file), resp.Status, a)
		}
	}
	if got := stored(t, env.JS, c); len(got) != len(events) {
		t.Errorf("the Stalwart server's EVENTS holds %d events, want %d", len(got), len(events))
	}
}

// TestTooManyBadEvents: a batch with more than MaxRejected bad events is
// cut at the next one: what came before is stored or dead-lettered as
// usual, the rest is dead-lettered as one, and the answer is 400.
func TestTooManyBadEvents(t *testing.T) {
	addr, env, c := serve(t, pubConfig())
	evs := []string{stalwartEvent("before", 1, 10)}
	for i := 0; i < ingest.MaxRejected+5; i++ {
		evs = append(evs, "0")
	}
	evs = append(evs, stalwartEvent("after", 1, 10))
	status, a, _ := postJSON(t, "http://"+addr+ingest.PathStalwart, batchOf(evs...))
	if status != 400 || a.Accepted != 1 || len(a.Rejected) != ingest.MaxRejected+1 || len(a.Failed) != 0 ||
		!strings.Contains(a.Error, "more than 1000 bad events: event 1001 and those after it were not ingested") {
		t.Fatalf("%d accepted %d rejected %d failed %d: %s", status, a.Accepted, len(a.Rejected), len(a.Failed), a.Error)
	}
	last := a.Rejected[len(a.Rejected)-1]
	if last.Index != ingest.MaxRejected+1 || !strings.Contains(last.Error, "this and the events after it were not ingested") {
		t.Errorf("last rejection %+v", last)
	}
	if got := stored(t, env.JS, c); len(got) != 1 || got["before"] == nil {
		t.Errorf("EVENTS holds %v, want the event before the cut", keys(got))
	}
	// The bad events are the same "0": one dead letter, and the rest.
	letters := deadLetters(t, env.JS, c)
	rest := letterFor(t, letters, "stalwart event 1001: this and the events after it were not ingested")
	if !strings.HasPrefix(string(rest.Data), "0,0,0,0,0,") || !strings.HasSuffix(string(rest.Data), `]}`) {
		t.Errorf("the rest is dead-lettered as %q", rest.Data)
	}
	if len(letters) != 2 || rest.Header.Get(pipeline.HeaderReason) == "" {
		t.Errorf("DLQ holds %d letters, want 2", len(letters))
	}
}
