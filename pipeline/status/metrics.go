package status

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// metricsView is what the endpoints that answered say about the sinks.
type metricsView struct {
	// up is mailtel_sink_up per sink, the lowest over the endpoints (one
	// paused instance makes the sink paused).
	up map[string]*float64
	// written is mailtel_written_total per sink, summed.
	written map[string]float64
	// degraded and notReady are the reasons /readyz gives for the sink's
	// check, "sink:<name>".
	degraded, notReady map[string]string
}

// scrapeAll asks every endpoint's /metrics and /readyz at once.
func scrapeAll(ctx context.Context, client *http.Client, addrs []string) (metricsView, []Endpoint) {
	v := metricsView{up: map[string]*float64{}, written: map[string]float64{}, degraded: map[string]string{}, notReady: map[string]string{}}
	eps := make([]Endpoint, len(addrs))
	results := make([]scrape, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = scrapeOne(ctx, client, a)
		}()
	}
	wg.Wait()
	for i, r := range results {
		eps[i] = Endpoint{Addr: addrs[i], Ready: r.ready}
		if r.err != nil {
			eps[i].Error = r.err.Error()
			continue
		}
		for sink, up := range r.up {
			if cur := v.up[sink]; cur == nil || up < *cur {
				v.up[sink] = &up
			}
		}
		for sink, n := range r.written {
			v.written[sink] += n
		}
		for sink, reason := range r.degraded {
			v.degraded[sink] = reason
		}
		for sink, reason := range r.notReady {
			v.notReady[sink] = reason
		}
	}
	return v, eps
}

// scrape is one endpoint's answer.
type scrape struct {
	err                error
	ready              string
	up, written        map[string]float64
	degraded, notReady map[string]string
}

// scrapeOne asks one endpoint. An endpoint whose /metrics does not answer
// counts as not answering.
func scrapeOne(ctx context.Context, client *http.Client, addr string) scrape {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimSuffix(base, "/")
	var r scrape
	body, _, err := get(ctx, client, base+"/metrics")
	if err != nil {
		r.err = err
		return r
	}
	r.up, r.written = map[string]float64{}, map[string]float64{}
	for _, s := range parseMetrics(strings.NewReader(body), "mailtel_sink_up", "mailtel_written_total") {
		sink, ok := s.labels["sink"]
		if !ok {
			continue
		}
		if s.name == "mailtel_sink_up" {
			r.up[sink] = s.value
		} else {
			r.written[sink] = s.value
		}
	}
	ready, _, err := get(ctx, client, base+"/readyz")
	if err != nil {
		return r
	}
	r.ready, _, _ = strings.Cut(strings.TrimSpace(ready), "\n")
	r.degraded, r.notReady = ParseReady(r.ready)
	return r
}

// get returns the body of a GET, whatever its status code (/readyz
// answers 503 with a body that says why).
func get(ctx context.Context, client *http.Client, url string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("no answer: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", resp.StatusCode, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return "", resp.StatusCode, fmt.Errorf("%s: not found (not a mailtel process?)", url)
	}
	return string(b), resp.StatusCode, nil
}

// unwrapURLError drops the "Get \"url\": " prefix of a client error.
func unwrapURLError(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || !strings.HasPrefix(err.Error(), "Get ") {
			return err
		}
		err = u.Unwrap()
	}
}

// checkStart matches the start of one check in a /readyz answer:
// "name: " or "kind:name: ".
var checkStart = regexp.MustCompile(`^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?: `)

// ParseReady reads the first line of a mailtel /readyz answer ("ready",
// "ready, degraded: CHECKS" or "not ready: CHECKS", CHECKS being
// "name: reason" joined by "; ", see obs.Handler) and returns the reasons
// of the sinks' checks ("sink:<name>") by sink name: those degraded and
// those not ready. A reason may itself hold "; ".
func ParseReady(line string) (degraded, notReady map[string]string) {
	degraded, notReady = map[string]string{}, map[string]string{}
	var into map[string]string
	var rest string
	if r, ok := strings.CutPrefix(line, "ready, degraded: "); ok {
		into, rest = degraded, r
	} else if r, ok := strings.CutPrefix(line, "not ready: "); ok {
		into, rest = notReady, r
	} else {
		return
	}
	var checks []string
	for _, part := range strings.Split(rest, "; ") {
		if len(checks) == 0 || checkStart.MatchString(part) {
			checks = append(checks, part)
		} else {
			checks[len(checks)-1] += "; " + part
		}
	}
	for _, c := range checks {
		name, reason, _ := strings.Cut(c, ": ")
		if sink, ok := strings.CutPrefix(name, "sink:"); ok {
			into[sink] = reason
		}
	}
	return
}

// metricSample is one sample of the Prometheus text format.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics returns the samples of the named metrics in the Prometheus
// text exposition format; lines it cannot read are skipped.
func parseMetrics(r io.Reader, names ...string) []metricSample {
	var out []metricSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		s := metricSample{name: line[:end], labels: map[string]string{}}
		found := false
		for _, n := range names {
			found = found || n == s.name
		}
		if !found {
			continue
		}
		rest := line[end:]
		if rest[0] == '{' {
			var ok bool
			if rest, ok = parseLabels(rest[1:], s.labels); !ok {
				continue
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// parseLabels reads `name="value",...}` into labels and returns what
// follows the closing brace.
func parseLabels(s string, labels map[string]string) (string, bool) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], true
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", false
		}
		name := s[:eq]
		s = s[eq+2:]
		var b strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(s[i])
		}
		if i == len(s) {
			return "", false
		}
		labels[name] = b.String()
		s = s[i+1:]
	}
}
