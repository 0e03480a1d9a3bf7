package secretstest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailtel/mailtel/pipeline/pipelinetest"
)

// hook is one [webhook.<name>] of the configuration and its receiver.
type hook struct {
	name    string
	scheme  string // http or https
	addr    string // host:port of the receiver
	timeout string
	basic   bool // auth with a user name (basic auth), else a bearer token

	urlPass, query, sigKey, header, auth string // the secrets
	sigKeyRef, headerRef, authRef        string // their TOML values
}

// url is the configured URL: user info and query carry secrets.
func (k *hook) url() string {
	return fmt.Sprintf("%s://whuser:%s@%s/hook/%s?api_key=%s&v=1", k.scheme, k.urlPass, k.addr, k.name, k.query)
}

func (k *hook) section() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[webhook.%s]\nurl = %q\nevents = [\"*\"]\nsignature-key = %s\ntimeout = %q\nthrottle = \"10ms\"\nbatch-size = 10\n", k.name, k.url(), k.sigKeyRef, k.timeout)
	b.WriteString("discard-after = \"2s\"\nmax-backoff = \"200ms\"\n")
	fmt.Fprintf(&b, "[webhook.%s.headers]\nX-Api-Key = %s\nX-Source = \"mailtel-secretstest\"\n", k.name, k.headerRef)
	fmt.Fprintf(&b, "[webhook.%s.auth]\n", k.name)
	if k.basic {
		b.WriteString("username = \"whuser\"\n")
	}
	fmt.Fprintf(&b, "secret = %s\n\n", k.authRef)
	return b.String()
}

// authorization is the Authorization header the receiver must get.
func (k *hook) authorization() string {
	if k.basic {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("whuser:"+k.auth))
	}
	return "Bearer " + k.auth
}

// world is the configuration of one run: its secrets, addresses, webhook
// receivers and configuration files.
type world struct {
	t *testing.T
	h *harness
	s *secretSet

	nRef int // env variables and files made for %{env}% and %{file}%

	natsAddr, natsToken, natsTokenRef        string // the router's embedded server (token)
	upassAddr, natsPassword, natsPasswordRef string // a server of the test (user/password)
	closedAddr, closedAddr2                  string // nothing listens there
	upAddr, upHTTP                           string // router up's embedded server and health
	natsURLPass, natsURLToken, natsFlagPass  string

	pubToken, pubPassword, pubSigKey       string
	pubPasswordRef, pubSigKeyRef           string
	metricsAddr, metricsSecret, metricsRef string
	replayPass, replayQuery                string

	hooks map[string]*hook
	logs  string // directory of the log tracer

	okEvents atomic.Int64 // events the ok receiver took
	okCreds  atomic.Bool  // it got the configured credentials
	okSeen   sync.Map     // event ids
	quit     chan struct{}
}

// ref returns the TOML value that gives v: as is, or through an
// environment variable or a file.
func (w *world) ref(v, via string) string {
	w.nRef++
	switch via {
	case "env":
		name := fmt.Sprintf("MAILTEL_SECRETSTEST_%d", w.nRef)
		w.h.env = append(w.h.env, name+"="+v)
		return fmt.Sprintf(`"%%{env:%s}%%"`, name)
	case "file":
		path := w.h.write(fmt.Sprintf("secrets/s%d", w.nRef), v+"\n")
		return fmt.Sprintf(`"%%{file:%s}%%"`, path)
	}
	return fmt.Sprintf("%q", v)
}

func newWorld(t *testing.T, h *harness) *world {
	s := &secretSet{}
	w := &world{t: t, h: h, s: s, hooks: map[string]*hook{}, quit: make(chan struct{})}
	t.Cleanup(func() { close(w.quit) })

	w.natsAddr, w.upassAddr = pipelinetest.FreeAddr(t), pipelinetest.FreeAddr(t)
	// Reserved, not merely free: a parallel test package that took one of
	// them would answer in place of "connection refused".
	w.closedAddr, w.closedAddr2 = pipelinetest.ReservePort(t).Addr, pipelinetest.ReservePort(t).Addr
	w.upAddr, w.upHTTP, w.metricsAddr = pipelinetest.FreeAddr(t), pipelinetest.FreeAddr(t), pipelinetest.FreeAddr(t)
	w.natsToken = s.add("nats.token (and the token of nats.url)", "nats-token")
	w.natsTokenRef = w.ref(w.natsToken, "file")
	w.natsPassword = s.add("nats.password (and the password of nats.url)", "nats-password")
	w.natsPasswordRef = w.ref(w.natsPassword, "env")
	s.pair("mailtel", w.natsPassword)
	w.natsURLPass = s.add("nats.url password", "nats-url-pass")
	s.pair("mailtel", w.natsURLPass)
	w.natsURLToken = s.add("nats.url token", "nats-url-token")
	w.natsFlagPass = s.add("--nats URL password", "nats-flag-pass")
	s.pair("mailtel", w.natsFlagPass)

	w.pubToken = s.add("publisher.token", "pub-token")
	w.pubPassword = s.add("publisher.password", "pub-password")
	w.pubPasswordRef = w.ref(w.pubPassword, "env")
	s.pair("ingest", w.pubPassword)
	w.pubSigKey = s.add("publisher.signature-key", "pub-sigkey")
	w.pubSigKeyRef = w.ref(w.pubSigKey, "file")
	w.metricsSecret = s.add("metrics.prometheus.auth.secret", "metrics-secret")
	w.metricsRef = w.ref(w.metricsSecret, "env")
	s.pair("scraper", w.metricsSecret)
	w.replayPass = s.add("sinks replay --to URL password", "replay-pass")
	s.pair("replay", w.replayPass)
	w.replayQuery = s.add("sinks replay --to URL query", "replay-query")
	w.logs = filepath.Join(h.dir, "logs")

	// The receivers. bad and redirect repeat in their answer what they
	// were sent, as receivers do ("invalid api key ..."): mailtel keeps
	// the start of a rejecting answer in its errors and dead letters.
	echo := func(r *http.Request) string {
		return fmt.Sprintf("invalid api key %q; authorization %q; x-api-key %q; url %q",
			r.URL.Query().Get("api_key"), r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.URL.String())
	}
	mux := map[string]http.HandlerFunc{
		"ok": func(rw http.ResponseWriter, r *http.Request) {
			var body struct {
				Events []struct {
					ID string `json:"id"`
				} `json:"events"`
			}
			data, _ := io.ReadAll(r.Body)
			if json.Unmarshal(data, &body) != nil {
				http.Error(rw, "bad body", http.StatusBadRequest)
				return
			}
			k := w.hooks["ok"]
			if strings.HasPrefix(r.URL.Path, "/hook/ok") && r.Header.Get("Authorization") == k.authorization() &&
				r.Header.Get("X-Api-Key") == k.header && r.URL.Query().Get("api_key") == k.query && r.Header.Get("X-Signature") != "" {
				w.okCreds.Store(true)
			}
			for _, ev := range body.Events {
				if _, dup := w.okSeen.LoadOrStore(ev.ID, true); !dup {
					w.okEvents.Add(1)
				}
			}
			rw.WriteHeader(http.StatusOK)
		},
		"bad": func(rw http.ResponseWriter, r *http.Request) {
			http.Error(rw, echo(r), http.StatusBadRequest)
		},
		"redirect": func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Location", "http://127.0.0.1:1/moved?api_key="+r.URL.Query().Get("api_key"))
			http.Error(rw, "moved: "+echo(r), http.StatusTemporaryRedirect)
		},
		"slow": func(rw http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-w.quit:
			case <-time.After(10 * time.Second):
			}
		},
		"tls": func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusOK) },
	}
	for i, name := range []string{"ok", "bad", "redirect", "slow", "refused", "tls"} {
		k := &hook{name: name, scheme: "http", timeout: "500ms", basic: i%2 == 0}
		switch name {
		case "ok":
			k.timeout = "5s"
		case "refused":
			k.addr = w.closedAddr
		case "tls":
			srv := httptest.NewUnstartedServer(mux[name])
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are the point
			srv.StartTLS()
			t.Cleanup(srv.Close)
			k.scheme, k.addr = "https", srv.Listener.Addr().String()
		}
		if k.addr == "" {
			srv := httptest.NewServer(mux[name])
			t.Cleanup(srv.Close)
			k.addr = srv.Listener.Addr().String()
		}
		k.urlPass = s.add("webhook."+name+".url password", "wh-"+name+"-urlpass")
		s.pair("whuser", k.urlPass)
		k.query = s.add("webhook."+name+".url query value", "wh-"+name+"-query")
		k.sigKey = s.add("webhook."+name+".signature-key", "wh-"+name+"-sigkey")
		k.header = s.add("webhook."+name+".headers.X-Api-Key", "wh-"+name+"-header")
		k.auth = s.add("webhook."+name+".auth.secret", "wh-"+name+"-auth")
		if k.basic {
			s.pair("whuser", k.auth)
		}
		vias := []string{"", "env", "file"}
		k.sigKeyRef = w.ref(k.sigKey, vias[i%3])
		k.headerRef = w.ref(k.header, vias[(i+1)%3])
		k.authRef = w.ref(k.auth, vias[(i+2)%3])
		w.hooks[name] = k
	}
	return w
}

// config writes a configuration file: the [nats] section given, the rest
// shared by every file. extra is appended.
func (w *world) config(name, format, nats, metricsListen, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# secretstest: %s\n[logging]\nlevel = \"trace\"\nformat = %q\n\n[nats]\n%s\n\n", name, format, nats)
	fmt.Fprintf(&b, "[publisher]\ntoken = %q\nuser = \"ingest\"\npassword = %s\nsignature-key = %s\n\n", w.pubToken, w.pubPasswordRef, w.pubSigKeyRef)
	b.WriteString("[sinks]\nmax-backoff = \"200ms\"\nack-wait = \"10s\"\n\n")
	fmt.Fprintf(&b, "[metrics.prometheus]\nenable = true\nlisten = %q\n[metrics.prometheus.auth]\nusername = \"scraper\"\nsecret = %s\n\n", metricsListen, w.metricsRef)
	fmt.Fprintf(&b, "[tracer.log]\ntype = \"log\"\nlevel = \"trace\"\npath = %q\nformat = \"json\"\n\n", w.logs)
	b.WriteString("[tracer.console]\ntype = \"console\"\nlevel = \"info\"\n\n")
	for _, name := range []string{"ok", "bad", "redirect", "slow", "refused", "tls"} {
		b.WriteString(w.hooks[name].section())
	}
	b.WriteString(extra)
	return w.h.write(name, b.String())
}

// configs are the files of a run.
type configs struct {
	embedded  string // url empty: the router starts the server (token); console logs
	client    string // url nats://<token>@host: a client of that server; JSON logs
	userpass  string // url with user info, user and password: the test's second server
	closed    string // url with user info at a closed port, user and password
	closedTok string // a server list at closed ports, a token in the URL and in nats.token
	wrongAuth string // user info the router's server refuses
	up        string // router up's own embedded server
	text      string // client's content, for the invalid variants
}

func (w *world) configs() configs {
	var c configs
	c.embedded = w.config("embedded.toml", "console",
		fmt.Sprintf("listen = %q\nstore-dir = %q\ntoken = %s", w.natsAddr, filepath.Join(w.h.dir, "nats"), w.natsTokenRef), w.metricsAddr, "")
	c.client = w.config("client.toml", "json",
		fmt.Sprintf("url = \"nats://%s@%s\"", w.natsToken, w.natsAddr), w.metricsAddr, "")
	c.userpass = w.config("userpass.toml", "json",
		fmt.Sprintf("url = \"nats://mailtel:%s@%s\"\nuser = \"mailtel\"\npassword = %s", w.natsPassword, w.upassAddr, w.natsPasswordRef), "127.0.0.1:0", "")
	c.closed = w.config("closed.toml", "console",
		fmt.Sprintf("url = \"nats://mailtel:%s@%s\"\nuser = \"mailtel\"\npassword = %s", w.natsURLPass, w.closedAddr, w.natsPasswordRef), "127.0.0.1:0", "")
	c.closedTok = w.config("closed-token.toml", "json",
		fmt.Sprintf("url = \"nats://%s@%s, nats://mailtel:%s@%s\"\ntoken = %s", w.natsURLToken, w.closedAddr, w.natsURLPass, w.closedAddr2, w.natsTokenRef), "127.0.0.1:0", "")
	c.wrongAuth = w.config("wrong-auth.toml", "json",
		fmt.Sprintf("url = \"nats://mailtel:%s@%s\"", w.natsURLPass, w.natsAddr), "127.0.0.1:0", "")
	c.up = w.config("up.toml", "console",
		fmt.Sprintf("listen = %q\nstore-dir = %q\ntoken = %s", w.upAddr, filepath.Join(w.h.dir, "nats-up"), w.natsTokenRef), "127.0.0.1:0",
		fmt.Sprintf("[router]\nhttp = %q\n", w.upHTTP))
	data, err := os.ReadFile(c.client)
	if err != nil {
		w.t.Fatal(err)
	}
	c.text = string(data)
	return c
}

// invalid writes variants of the client configuration that do not load,
// each with the secrets around the error, and returns their paths.
func (w *world) invalid(c configs) map[string]string {
	tokenLine := fmt.Sprintf("token = %q\n", w.pubToken)
	if !strings.Contains(c.text, tokenLine) {
		w.t.Fatalf("client.toml has no line %q", tokenLine)
	}
	ok := w.hooks["ok"]
	okHeader := "X-Api-Key = " + ok.headerRef + "\n"
	variants := map[string]string{
		// A syntax error on the line of a secret: an unquoted value.
		"syntax": strings.Replace(c.text, tokenLine, "token = "+w.pubToken+"\n", 1),
		// An unterminated string holding a secret.
		"unterminated": strings.Replace(c.text, tokenLine, "token = \""+w.pubToken+"\n", 1),
		// A type error: a list of the secret and a number.
		"type-list": strings.Replace(c.text, tokenLine, fmt.Sprintf("token = [%q, 1]\n", w.pubToken), 1),
		// A type error next to secrets: a header value that is a number.
		"type-header": strings.Replace(c.text, okHeader, okHeader+"X-Number = 5\n", 1),
		// A key given twice.
		"duplicate": strings.Replace(c.text, tokenLine, tokenLine+tokenLine, 1),
		// Errors of validation around the secrets: URLs that do not parse
		// (a '/' in the password, read as a bad port; a bad escape in the
		// password), a user without
		// a password, an unset environment variable, a missing file.
		"semantic": strings.NewReplacer(
			"whuser:"+w.hooks["ok"].urlPass+"@", "whuser:"+w.hooks["ok"].urlPass+"/x@",
			"whuser:"+w.hooks["bad"].urlPass+"@", "whuser:"+w.hooks["bad"].urlPass+"%zz@",
			fmt.Sprintf("url = \"nats://%s@%s\"", w.natsToken, w.natsAddr), fmt.Sprintf("url = \"nats://%s@%s\"\nuser = \"mailtel\"", w.natsToken, w.natsAddr),
			"level = \"trace\"\nformat = \"json\"", "level = \"loud\"\nformat = \"json\"",
			w.pubPasswordRef, `"%{env:MAILTEL_SECRETSTEST_UNSET}%"`,
			w.pubSigKeyRef, `"%{file:`+filepath.Join(w.h.dir, "no-such-file")+`}%"`,
		).Replace(c.text),
	}
	paths := map[string]string{}
	for name, text := range variants {
		if text == c.text {
			w.t.Fatalf("invalid variant %s is the valid file", name)
		}
		paths[name] = w.h.write("invalid-"+name+".toml", text)
	}
	return paths
}
