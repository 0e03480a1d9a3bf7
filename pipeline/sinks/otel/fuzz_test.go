package otel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mailtel/mailtel/pipeline/sinks/otel"
)

// FuzzAnswer feeds the sink arbitrary collector answers (status, content
// type, body; the body holds the configured token where the input says):
// Write never panics, and its error never repeats the token.
func FuzzAnswer(f *testing.F) {
	const token = "fuzz-t0ken-value"
	st, _ := proto.Marshal(&spb.Status{Code: 16, Message: "bad token " + token})
	ps := plogotlp.NewExportResponse()
	ps.PartialSuccess().SetRejectedLogRecords(1)
	ps.PartialSuccess().SetErrorMessage("token " + token + " over quota")
	psb, _ := ps.MarshalProto()
	psj, _ := ps.MarshalJSON()
	f.Add(uint16(401), "application/x-protobuf", st, uint16(0))
	f.Add(uint16(200), "application/x-protobuf", psb, uint16(0))
	f.Add(uint16(200), "application/json", psj, uint16(0))
	f.Add(uint16(400), "text/plain", pad(600), uint16(509))
	f.Add(uint16(503), "", []byte("try later"), uint16(3))
	f.Add(uint16(200), "application/x-protobuf", []byte{0x0a, 0xff, 0xff}, uint16(1))

	var (
		mu     sync.Mutex
		status int
		ctype  string
		body   []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	defer srv.Close()
	c := httpConfig(srv.URL + "/v1/logs")
	c.Headers = otel.Headers{"Authorization": "Bearer " + token}
	s, err := otel.New("fuzz", c, otel.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close(context.Background())

	f.Fuzz(func(t *testing.T, code uint16, contentType string, answer []byte, at uint16) {
		if strings.ContainsAny(contentType, "\r\n") {
			return
		}
		i := min(int(at), len(answer))
		b := append(append(append([]byte{}, answer[:i]...), token...), answer[i:]...)
		mu.Lock()
		status, ctype, body = 200+int(code)%400, contentType, b
		mu.Unlock()
		err := s.Write(context.Background(), testEvents("f", 2))
		if err != nil && strings.Contains(err.Error(), token) {
			t.Fatalf("error repeats the token: %v", err)
		}
	})
}

func pad(n int) []byte { return []byte(strings.Repeat("x", n)) }
