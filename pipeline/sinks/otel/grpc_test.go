package otel_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailtel/mailtel/pipeline/delivery"
	"github.com/mailtel/mailtel/pipeline/sink"
	"github.com/mailtel/mailtel/pipeline/sinks/otel"
	"github.com/mailtel/mailtel/schema"
)

// grpcReceiver is a real OTLP/gRPC logs receiver (a grpc.Server with the
// LogsService) on 127.0.0.1.
type grpcReceiver struct {
	plogotlp.UnimplementedGRPCServer
	addr string

	mu       sync.Mutex
	md       []metadata.MD
	received map[string]int
	logs     []plog.Logs
	// answer decides the reply to call n: an error, or a partial success
	// of rejected records; nil accepts everything.
	answer func(n int) (rejected int64, msg string, err error)
}

func newGRPCReceiver(t *testing.T, fn func(n int) (int64, string, error)) *grpcReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &grpcReceiver{addr: l.Addr().String(), received: map[string]int{}, answer: fn}
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, r)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return r
}

func (r *grpcReceiver) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	n := len(r.md)
	r.md = append(r.md, md)
	r.mu.Unlock()
	resp := plogotlp.NewExportResponse()
	var rejected int64
	if r.answer != nil {
		var msg string
		var err error
		if rejected, msg, err = r.answer(n); err != nil {
			return resp, err
		}
		resp.PartialSuccess().SetRejectedLogRecords(rejected)
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	if rejected > 0 {
		return resp, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ld := plog.NewLogs()
	req.Logs().CopyTo(ld)
	r.logs = append(r.logs, ld)
	eachRecord(ld, func(_ pcommon.Map, _ string, lr plog.LogRecord) {
		id, _ := lr.Attributes().Get(otel.AttrEventID)
		r.received[id.Str()]++
	})
	return resp, nil
}

func grpcConfig(addr string) otel.Config {
	c := *otel.DefaultConfig()
	c.Transport = otel.TransportGRPC
	c.Endpoint = "http://" + addr
	c.Throttle = 0
	return c
}

// TestGRPC: events exported over OTLP/gRPC arrive once each, as the
// mapping says, with the configured headers as metadata.
func TestGRPC(t *testing.T) {
	rc := newGRPCReceiver(t, nil)
	c := grpcConfig(rc.addr)
	c.BatchSize = 100
	c.Headers = otel.Headers{"X-Api-Key": "grpc-key", "Authorization": "Bearer grpc%20token"}
	s := newSink(t, c, otel.Options{})
	events := synthetic(1000)
	written := 0
	start := time.Now()
	out := delivery.Policy{}.Do(context.Background(), events, s.Write, delivery.Hooks{Written: func(idx []int) { written += len(idx) }})
	elapsed := time.Since(start)
	if written != len(events) || len(out.Rejected) > 0 {
		t.Fatalf("written %d, outcome %+v", written, out)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.md) != 10 {
		t.Errorf("%d calls, want 10", len(rc.md))
	}
	for _, md := range rc.md {
		if got := md.Get("x-api-key"); !slices.Equal(got, []string{"grpc-key"}) {
			t.Fatalf("x-api-key %v", got)
		}
		// Percent-decoded, as Stalwart's exporter decodes header values.
		if got := md.Get("authorization"); !slices.Equal(got, []string{"Bearer grpc token"}) {
			t.Fatalf("authorization %v", got)
		}
		if ua := md.Get("user-agent"); len(ua) != 1 || !strings.HasPrefix(ua[0], "mailtel") {
			t.Fatalf("user-agent %v", ua)
		}
	}
	byID := map[string]*schema.Event{}
	for _, ev := range events {
		byID[ev.ID] = ev
		if rc.received[ev.ID] != 1 {
			t.Fatalf("%s received %d times", ev.ID, rc.received[ev.ID])
		}
	}
	for _, ld := range rc.logs {
		eachRecord(ld, func(res pcommon.Map, scope string, lr plog.LogRecord) {
			id, _ := lr.Attributes().Get(otel.AttrEventID)
			checkRecord(t, byID[id.Str()], res, scope, lr)
		})
	}
	t.Logf("1000 events over gRPC in %s", elapsed.Round(time.Millisecond))
}

// TestGRPCStatuses: OTLP/gRPC's retryable codes are retried (with
// RetryInfo's delay), every other code is permanent for the events of the
// call; a secret the status message repeats is masked.
func TestGRPCStatuses(t *testing.T) {
	const token = "grpc-s3cret-token"
	withRetry := func(code codes.Code, d time.Duration) error {
		st, err := status.New(code, "come back later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name      string
		err       error
		retryable bool
		after     time.Duration
	}{
		{"unavailable", status.Error(codes.Unavailable, "down"), true, 0},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), true, 0},
		{"aborted", status.Error(codes.Aborted, "x"), true, 0},
		{"data loss", status.Error(codes.DataLoss, "x"), true, 0},
		{"unavailable with retry info", withRetry(codes.Unavailable, 4*time.Second), true, 4 * time.Second},
		{"exhausted with retry info", withRetry(codes.ResourceExhausted, 3*time.Second), true, 3 * time.Second},
		{"exhausted without", status.Error(codes.ResourceExhausted, "quota"), false, 0},
		{"invalid argument", status.Error(codes.InvalidArgument, "bad record"), false, 0},
		{"unauthenticated", status.Error(codes.Unauthenticated, "bad token "+token), false, 0},
		{"internal", status.Error(codes.Internal, "oops"), false, 0},
		{"unimplemented", status.Error(codes.Unimplemented, "no logs here"), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newGRPCReceiver(t, func(int) (int64, string, error) { return 0, "", tc.err })
			c := grpcConfig(rc.addr)
			c.Headers = otel.Headers{"Authorization": "Bearer " + token}
			s := newSink(t, c, otel.Options{})
			evs := testEvents("g", 3)
			err := s.Write(context.Background(), evs)
			if err == nil || sink.IsPermanent(err) == tc.retryable {
				t.Fatalf("error %v: want retryable %v", err, tc.retryable)
			}
			var ee *otel.ExportError
			if !errors.As(err, &ee) || ee.Code != status.Code(tc.err) {
				t.Fatalf("error %v: want an ExportError with code %s", err, status.Code(tc.err))
			}
			if !tc.retryable && !slices.Equal(sink.FailedEventIDs(err), eventIDs(evs)) {
				t.Fatalf("failed ids %v", sink.FailedEventIDs(err))
			}
			var ra sink.RetryAfter
			if tc.after > 0 && (!errors.As(err, &ra) || ra.RetryAfter() != tc.after) {
				t.Fatalf("error %v: want retry after %s", err, tc.after)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error repeats a secret: %v", err)
			}
		})
	}
}

func TestGRPCPartialSuccess(t *testing.T) {
	rc := newGRPCReceiver(t, func(int) (int64, string, error) { return 2, "2 too large", nil })
	s := newSink(t, grpcConfig(rc.addr), otel.Options{})
	if err := s.Write(context.Background(), testEvents("gp", 5)); err != nil {
		t.Fatal(err)
	}
	if s.Rejected() != 2 {
		t.Fatalf("Rejected() = %d", s.Rejected())
	}
}

// TestGRPCDown: a collector that does not listen is a retryable failure.
func TestGRPCDown(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	c := grpcConfig(addr)
	c.Timeout = 2e9
	s := newSink(t, c, otel.Options{})
	err := s.Write(context.Background(), testEvents("gd", 1))
	var ee *otel.ExportError
	if err == nil || sink.IsPermanent(err) || !errors.As(err, &ee) || ee.Code != codes.Unavailable {
		t.Fatalf("error %v, want a retryable Unavailable", err)
	}
}
