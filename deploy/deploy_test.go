// Package deploy holds no code: its tests check the deployment files of
// this directory against the code they configure, with the parsers that
// will read them (nats-server's configuration and flag parsers, mailtel's
// config loader) and structural checks of the YAML and JSON.
package deploy

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/pipeline/obs"
	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
	"github.com/mailtel/mailtel/pipeline/sinks/webhook"
)

// mailtelPorts are the loopback ports mailtel uses by default: embedded
// NATS, ingest, event metrics, router, sinks and publisher health.
var mailtelPorts = []int{4222, 8025, 9100, 9101, 9102, 9103}

func TestNATSNodeConfigs(t *testing.T) {
	var nodes []*server.Options
	for i := 1; i <= 3; i++ {
		path := filepath.Join("nats", fmt.Sprintf("n%d.conf", i))
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		nodes = append(nodes, o)
	}
	ports := map[int]string{}
	claim := func(port int, what string) {
		t.Helper()
		if slices.Contains(mailtelPorts, port) {
			t.Errorf("%s uses port %d, a mailtel default", what, port)
		}
		if prev, ok := ports[port]; ok {
			t.Errorf("%s uses port %d, as does %s", what, port, prev)
		}
		ports[port] = what
	}
	var listens []string
	for i, o := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		t.Run(name, func(t *testing.T) {
			if o.ServerName != name {
				t.Errorf("server_name %q, want %q", o.ServerName, name)
			}
			if !o.JetStream || o.StoreDir != "./data/cluster/"+name {
				t.Errorf("jetstream %v, store_dir %q: want enabled, ./data/cluster/%s", o.JetStream, o.StoreDir, name)
			}
			if o.Host != "127.0.0.1" || o.Cluster.Host != "127.0.0.1" || o.HTTPHost != "127.0.0.1" {
				t.Errorf("hosts %q, %q, %q: want loopback for the one-machine layout", o.Host, o.Cluster.Host, o.HTTPHost)
			}
			if o.Port != 14222+i || o.Cluster.Port != 16222+i || o.HTTPPort != 18222+i {
				t.Errorf("ports client %d, cluster %d, http %d: want %d, %d, %d (as documented)", o.Port, o.Cluster.Port, o.HTTPPort, 14222+i, 16222+i, 18222+i)
			}
			if o.Cluster.Name != "mailtel" {
				t.Errorf("cluster name %q, want mailtel", o.Cluster.Name)
			}
		})
		claim(o.Port, o.ServerName+" clients")
		claim(o.Cluster.Port, o.ServerName+" routes")
		claim(o.HTTPPort, o.ServerName+" monitoring")
		listens = append(listens, net.JoinHostPort(o.Cluster.Host, strconv.Itoa(o.Cluster.Port)))
	}
	// Every node routes to every node's cluster listener.
	for _, o := range nodes {
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		sort.Strings(routes)
		if !slices.Equal(routes, listens) {
			t.Errorf("%s routes %v, want the three cluster listeners %v", o.ServerName, routes, listens)
		}
	}
}

// loadConfig loads a mailtel configuration with the ingest token variable
// set, as every deployment sets it.
func loadConfig(t *testing.T, data []byte) *config.Config {
	t.Helper()
	t.Setenv("MAILTEL_INGEST_TOKEN", "test-token")
	c, err := config.Parse(data)
	if err != nil {
		t.Fatalf("mailtel configuration does not load: %v", err)
	}
	return c
}

// checkClusterConfig checks what every cluster configuration must have.
func checkClusterConfig(t *testing.T, c *config.Config, wantURL string) {
	t.Helper()
	if c.NATS.URL != wantURL {
		t.Errorf("nats.url %q, want %q", c.NATS.URL, wantURL)
	}
	if c.Streams.Replicas != 3 {
		t.Errorf("streams.replicas %d, want 3", c.Streams.Replicas)
	}
	if c.Publisher.Token != "test-token" {
		t.Errorf("publisher.token %q: want it from MAILTEL_INGEST_TOKEN", c.Publisher.Token)
	}
	kinds := map[string]string{}
	for _, s := range c.SinkSpecs() {
		kinds[s.Name] = s.Kind
	}
	want := map[string]string{"log": "log", "security": "log", "metrics": "metrics"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("sinks %v, want %v (the webhook example stays disabled)", kinds, want)
	}
	if w := c.Sink("siem"); w == nil || w.Config.(*webhook.Config).URL == "" {
		t.Errorf("no [webhook.siem] example")
	}
	for what, addr := range map[string]string{"router.http": c.Router.HTTP, "sinks.http": c.Sinks.HTTP, "metrics.prometheus.listen": c.Sink("metrics").Config.(*metrics.Config).Prometheus.Listen, "publisher.listen": c.Publisher.Listen} {
		if !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("%s %q: want 0.0.0.0 so that Prometheus and senders in other containers reach it", what, addr)
		}
	}
}

func TestClusterConfig(t *testing.T) {
	data, err := os.ReadFile("mailtel.cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	c := loadConfig(t, data)
	checkClusterConfig(t, c, "nats://n1:4222,nats://n2:4222,nats://n3:4222")

	// Without the token variable the file must not load (no silent
	// unauthenticated ingest).
	os.Unsetenv("MAILTEL_INGEST_TOKEN")
	if _, err := config.Parse(data); err == nil || !strings.Contains(err.Error(), "MAILTEL_INGEST_TOKEN") {
		t.Errorf("loading without MAILTEL_INGEST_TOKEN: %v, want an error naming it", err)
	}
}

// readYAML decodes every document of a YAML file.
func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				return docs
			}
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a decoded YAML or JSON value along keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func TestCompose(t *testing.T) {
	doc := readYAML(t, filepath.Join("compose", "docker-compose.yml"))[0]
	services, _ := doc["services"].(map[string]any)
	for _, want := range []string{"n1", "n2", "n3", "router", "sinks", "publisher", "prometheus", "grafana"} {
		if services[want] == nil {
			t.Errorf("no service %s", want)
		}
	}
	// The NATS nodes: the command is parsed by nats-server's own flag parser.
	for _, name := range []string{"n1", "n2", "n3"} {
		args := strs(get(services, name, "command"))
		o, err := server.ConfigureOptions(flag.NewFlagSet(name, flag.ContinueOnError), args, nil, nil, nil)
		if err != nil {
			t.Errorf("%s: nats-server rejects its flags %v: %v", name, args, err)
			continue
		}
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		if o.ServerName != name || !o.JetStream || o.StoreDir != "/data" || o.Cluster.Name != "mailtel" ||
			!slices.Equal(routes, []string{"n1:6222", "n2:6222", "n3:6222"}) {
			t.Errorf("%s: name %q, jetstream %v, store %q, cluster %q, routes %v", name, o.ServerName, o.JetStream, o.StoreDir, o.Cluster.Name, routes)
		}
		if get(services, name, "image") == nil || !strings.HasPrefix(fmt.Sprint(get(services, name, "image")), "nats:") {
			t.Errorf("%s: want the official nats image", name)
		}
		if g, m := get(services, name, "environment", "GOGC"), get(services, name, "environment", "GOMEMLIMIT"); g != "200" || m == nil {
			t.Errorf("%s: GOGC %v, GOMEMLIMIT %v: want deploy/k8s/nats-values.yaml's collector settings", name, g, m)
		}
	}
	// The mailtel services run the binaries of deploy/Dockerfile with the
	// cluster configuration mounted; yaml.v3 resolves the merge keys.
	for name, bin := range map[string]string{"router": "router", "sinks": "sinks", "publisher": "publisher"} {
		cmd := strs(get(services, name, "command"))
		if len(cmd) < 3 || cmd[0] != bin || !slices.Contains(cmd, "/etc/mailtel/mailtel.toml") {
			t.Errorf("%s: command %v", name, cmd)
		}
		if df := get(services, name, "build", "dockerfile"); df != "deploy/Dockerfile" {
			t.Errorf("%s: build.dockerfile %v", name, df)
		}
		if !slices.Contains(strs(get(services, name, "volumes")), "../mailtel.cluster.toml:/etc/mailtel/mailtel.toml:ro") {
			t.Errorf("%s: does not mount deploy/mailtel.cluster.toml", name)
		}
	}
	if r := get(services, "router", "deploy", "replicas"); r != 2 {
		t.Errorf("router replicas %v, want 2", r)
	}
	// Every mounted host file exists, and every published port stays on
	// this host.
	for name := range services {
		for _, v := range strs(get(services, name, "volumes")) {
			if src, _, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
		for _, p := range strs(get(services, name, "ports")) {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join("compose", "../..", "go.mod")); err != nil {
		t.Errorf("build context ../.. is not the repository root: %v", err)
	}
}

func TestKubernetes(t *testing.T) {
	var objs []map[string]any
	k := readYAML(t, filepath.Join("k8s", "kustomization.yaml"))[0]
	resources := strs(k["resources"])
	files, _ := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" || base == "nats-values.yaml" {
			continue
		}
		if !slices.Contains(resources, base) {
			t.Errorf("%s is not listed in kustomization.yaml", base)
		}
		objs = append(objs, readYAML(t, f)...)
	}
	byKind := map[string]map[string]any{}
	for _, o := range objs {
		kind, name := fmt.Sprint(o["kind"]), fmt.Sprint(get(o, "metadata", "name"))
		if o["apiVersion"] == nil || kind == "" || name == "" {
			t.Errorf("object without apiVersion, kind or name: %v", o)
		}
		if kind != "Namespace" && get(o, "metadata", "namespace") != "mailtel" {
			t.Errorf("%s/%s: namespace %v, want mailtel", kind, name, get(o, "metadata", "namespace"))
		}
		byKind[kind+"/"+name] = o
	}

	cm := byKind["ConfigMap/mailtel-config"]
	toml, _ := get(cm, "data", "mailtel.toml").(string)
	checkClusterConfig(t, loadConfig(t, []byte(toml)), "nats://nats.mailtel.svc:4222")

	for name, want := range map[string]struct {
		replicas int
		bin      string
	}{"mailtel-router": {2, "router"}, "mailtel-sinks": {1, "sinks"}, "mailtel-publisher": {2, "publisher"}} {
		t.Run(name, func(t *testing.T) {
			d := byKind["Deployment/"+name]
			if d == nil {
				t.Fatal("no Deployment")
			}
			if r := get(d, "spec", "replicas"); r != want.replicas {
				t.Errorf("replicas %v, want %d", r, want.replicas)
			}
			sel, _ := get(d, "spec", "selector", "matchLabels").(map[string]any)
			labels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("selector %s=%v does not match the pod labels %v", k, v, labels)
				}
			}
			c := get(d, "spec", "template", "spec", "containers", 0)
			args := strs(get(c, "args"))
			if len(args) < 3 || args[0] != want.bin || !slices.Contains(args, "/etc/mailtel/mailtel.toml") {
				t.Errorf("args %v", args)
			}
			ports := map[string]bool{}
			for _, p := range get(c, "ports").([]any) {
				ports[fmt.Sprint(get(p, "name"))] = true
			}
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				if p := fmt.Sprint(get(c, probe, "httpGet", "port")); !ports[p] {
					t.Errorf("%s port %q is not a container port %v", probe, p, ports)
				}
			}
			if get(c, "volumeMounts", 0, "mountPath") != "/etc/mailtel" ||
				get(d, "spec", "template", "spec", "volumes", 0, "configMap", "name") != "mailtel-config" {
				t.Errorf("the ConfigMap is not mounted at /etc/mailtel")
			}
			if get(c, "env") == nil || !strings.Contains(fmt.Sprint(get(c, "env")), "MAILTEL_INGEST_TOKEN") {
				t.Errorf("MAILTEL_INGEST_TOKEN is not set (the configuration needs it)")
			}
		})
	}
	svc := byKind["Service/mailtel-ingest"]
	if get(svc, "spec", "selector", "app.kubernetes.io/name") != "mailtel-publisher" || get(svc, "spec", "ports", 0, "port") != 8025 {
		t.Errorf("Service mailtel-ingest: %v", get(svc, "spec"))
	}

	v := readYAML(t, filepath.Join("k8s", "nats-values.yaml"))[0]
	if get(v, "config", "cluster", "enabled") != true || get(v, "config", "cluster", "replicas") != 3 ||
		get(v, "config", "jetstream", "enabled") != true || get(v, "config", "jetstream", "fileStore", "pvc", "enabled") != true {
		t.Errorf("nats-values.yaml: want a 3-replica cluster with JetStream file storage on a PVC: %v", v["config"])
	}
	// The server's collector settings: GOGC=200, and a GOMEMLIMIT (Go's
	// units) under the container's memory limit (Kubernetes' units).
	limit := binarySize(t, fmt.Sprint(get(v, "container", "merge", "resources", "limits", "memory")), "Ki", "Mi", "Gi", "Ti")
	if g := get(v, "container", "env", "GOGC"); g != "200" {
		t.Errorf("nats-values.yaml: container.env.GOGC %v, want \"200\"", g)
	}
	if m := binarySize(t, fmt.Sprint(get(v, "container", "env", "GOMEMLIMIT")), "KiB", "MiB", "GiB", "TiB"); m <= 0 || m > limit*95/100 {
		t.Errorf("nats-values.yaml: GOMEMLIMIT %d bytes, want some, and at most 95%% of the memory limit, %d bytes", m, limit)
	}
}

// binarySize parses a size such as 8Gi or 7GiB: an integer and one of the
// suffixes for 2^10, 2^20, 2^30 and 2^40, in that order.
func binarySize(t *testing.T, s string, suffixes ...string) int64 {
	t.Helper()
	for i, suffix := range suffixes {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Errorf("size %q: %v", s, err)
			}
			return v << (10 * (i + 1))
		}
	}
	t.Errorf("size %q: want an integer and one of %v", s, suffixes)
	return 0
}

// knownMetrics returns the names of every metric mailtel serves: the
// pipeline metrics of obs.Metrics and the metrics sink's.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{metrics.EventsTotal: true, metrics.DurationSeconds: true, metrics.SizeBytes: true}
	m := reflect.ValueOf(*obs.NewMetrics())
	re := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for i := range m.NumField() {
		c, ok := m.Field(i).Interface().(prometheus.Collector)
		if !ok || m.Type().Field(i).Name == "Registry" {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if mm := re.FindStringSubmatch(d.String()); mm != nil {
				names[mm[1]] = true
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %v", names)
	}
	return names
}

// checkMetricNames reports every mailtel_ metric an expression names that
// mailtel does not serve.
func checkMetricNames(t *testing.T, known map[string]bool, where, expr string) {
	t.Helper()
	for _, name := range regexp.MustCompile(`mailtel_[a-z_]+`).FindAllString(expr, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !known[base] {
			t.Errorf("%s: unknown metric %s in %q", where, name, expr)
		}
	}
}

func TestPrometheus(t *testing.T) {
	known := knownMetrics(t)
	p := readYAML(t, filepath.Join("prometheus", "prometheus.yml"))[0]
	if !slices.Contains(strs(p["rule_files"]), "alerts.yml") {
		t.Errorf("prometheus.yml does not load alerts.yml")
	}
	scraped := fmt.Sprint(p["scrape_configs"])
	for _, port := range []string{"9100", "9101", "9102", "9103"} {
		if !strings.Contains(scraped, ":"+port) && !strings.Contains(scraped, "port:"+port) {
			t.Errorf("nothing scrapes port %s", port)
		}
	}
	a := readYAML(t, filepath.Join("prometheus", "alerts.yml"))[0]
	alerts := map[string]bool{}
	for _, g := range get(a, "groups").([]any) {
		for _, r := range get(g, "rules").([]any) {
			name, _ := get(r, "alert").(string)
			expr, _ := get(r, "expr").(string)
			alerts[name] = true
			if name == "" || expr == "" || get(r, "labels", "severity") == nil || get(r, "annotations", "summary") == nil {
				t.Errorf("rule %v: want alert, expr, labels.severity and annotations.summary", r)
			}
			checkMetricNames(t, known, "alert "+name, expr)
		}
	}
	for _, want := range []string{"MailtelConsumerLagHigh", "MailtelConsumerLagGrowing", "MailtelDeadLetters", "MailtelRedeliveriesHigh", "MailtelSinkWritesNothing"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	known := knownMetrics(t)
	data, err := os.ReadFile(filepath.Join("grafana", "mailtel-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int                      `json:"id"`
			Title   string                   `json:"title"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID != "mailtel" || len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" {
		t.Errorf("uid %q, templating %v: want uid mailtel and a datasource variable", d.UID, d.Templating.List)
	}
	ids := map[int]bool{}
	var all strings.Builder
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkMetricNames(t, known, "panel "+p.Title, tg.Expr)
			all.WriteString(tg.Expr + "\n")
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if prev, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", prev, p.Title, x, y)
					x, y = g.X+g.W, g.Y+g.H
				}
				used[cell{x, y}] = p.Title
			}
		}
	}
	for _, want := range []string{"mailtel_events_total", "mailtel_published_total", "mailtel_routed_total", "mailtel_written_total",
		"mailtel_consumer_lag", "mailtel_dead_lettered_total", "mailtel_redelivered_total", "histogram_quantile(0.99, sum by (le) (rate(mailtel_event_duration_seconds_bucket"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}
