package otel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailtel/mailtel/pipeline/sinks/outbound"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// MaxSnippet is how many bytes of what a collector said (a failed
// answer, a status message, a partial success's message) an error or a
// log line keeps.
const MaxSnippet = 512

// maxAnswer is how much of an answer is read: a partial success or a
// google.rpc.Status is small; the rest is dropped unread.
const maxAnswer = 64 << 10

// userAgent is sent unless headers set one.
const userAgent = "mailtel"

// exporter sends one export request to the collector.
type exporter interface {
	// export returns the collector's answer, or an error: an *ExportError
	// for a refusal, another error for a failure to reach it (retryable).
	export(ctx context.Context, body []byte, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error)
	close()
}

// httpExporter is OTLP/HTTP with protobuf bodies.
type httpExporter struct {
	url     string
	target  string // url as value.RedactURL shows it
	host    string // a configured Host header
	header  http.Header
	client  *http.Client
	ownsTr  *http.Transport // the transport newHTTP built, closed by close
	now     func() time.Time
	secrets *outbound.Secrets
	// bare is set when the URL has no path: a 404 then says that the
	// path is not added.
	bare bool
}

func newHTTP(endpoint string, u *url.URL, headers map[string]string, client *http.Client, concurrency int, now func() time.Time, target string, secrets *outbound.Secrets) *httpExporter {
	e := &httpExporter{url: endpoint, target: target, client: client, now: now, secrets: secrets,
		header: http.Header{}, bare: u.Path == "" || u.Path == "/"}
	e.header.Set("User-Agent", userAgent)
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			e.host = v
			continue
		}
		e.header.Set(k, v)
	}
	e.header.Set("Content-Type", "application/x-protobuf")
	if e.client == nil {
		e.client, e.ownsTr = outbound.NewClient(false, concurrency)
	}
	return e
}

func (e *httpExporter) close() {
	if e.ownsTr != nil {
		e.ownsTr.CloseIdleConnections()
	}
}

func (e *httpExporter) export(ctx context.Context, body []byte, _ plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	resp := plogotlp.NewExportResponse()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return resp, fmt.Errorf("post to %s: %w", e.target, err)
	}
	req.Header = e.header.Clone()
	if e.host != "" {
		req.Host = e.host
	}
	hr, err := e.client.Do(req)
	if err != nil {
		// The client's error repeats the URL, whose query may hold a key.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = e.target
		}
		return resp, fmt.Errorf("post to %s: %w", e.target, err)
	}
	defer hr.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(hr.Body, maxAnswer))
	io.Copy(io.Discard, io.LimitReader(hr.Body, maxAnswer)) // so that the connection can be reused
	if hr.StatusCode >= 200 && hr.StatusCode <= 299 {
		if err == nil && len(answer) > 0 {
			if isJSON(hr.Header.Get("Content-Type")) {
				_ = resp.UnmarshalJSON(answer)
			} else {
				// An answer that does not decode carries no partial
				// success: the collector said 2xx.
				_ = resp.UnmarshalProto(answer)
			}
		}
		return resp, nil
	}
	ee := &ExportError{Endpoint: e.target, StatusCode: hr.StatusCode, Message: e.message(hr.Header.Get("Content-Type"), answer)}
	switch {
	case outbound.RetryableStatus(hr.StatusCode):
		ee.Retryable = true
		ee.After, _ = outbound.ParseRetryAfter(hr.Header.Get("Retry-After"), e.now())
	case hr.StatusCode == http.StatusNotFound:
		if e.bare {
			ee.Message = strings.TrimSpace(ee.Message + " (the endpoint is used as is: give its path, usually /v1/logs)")
		}
	}
	return resp, ee
}

// message returns what a failed answer says: the message of a
// google.rpc.Status (what OTLP/HTTP servers send, in the request's
// protobuf), else the start of the answer; see snippet.
func (e *httpExporter) message(contentType string, answer []byte) string {
	if isProto(contentType) {
		var st spb.Status
		if err := proto.Unmarshal(answer, &st); err == nil && st.GetMessage() != "" {
			return snippet(e.secrets, st.GetMessage())
		}
	}
	return snippet(e.secrets, string(answer[:min(len(answer), MaxSnippet)]))
}

// snippet returns at most MaxSnippet bytes of what a collector said, valid
// UTF-8, with every secret replaced by value.Redacted.
func snippet(secrets *outbound.Secrets, s string) string {
	if len(s) > MaxSnippet {
		s = s[:MaxSnippet]
	}
	return secrets.Scrub(validUTF8(s), MaxSnippet)
}

// isProto reports whether an answer of this content type may be
// protobuf: OTLP/HTTP answers in the request's content type; a server that
// sets none is sniffed by net/http as octet-stream.
func isProto(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-protobuf", "application/protobuf", "application/octet-stream", "":
		return true
	}
	return false
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json"
}

// grpcExporter is OTLP/gRPC (the LogsService's Export call).
type grpcExporter struct {
	conn    *grpc.ClientConn
	client  plogotlp.GRPCClient
	md      metadata.MD
	target  string // endpoint as value.RedactURL shows it
	secrets *outbound.Secrets
}

func newGRPC(u *url.URL, headers map[string]string, target string, secrets *outbound.Secrets) (*grpcExporter, error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithUserAgent(userAgent)}
	md := metadata.MD{}
	for k, v := range headers {
		switch strings.ToLower(k) {
		case "host":
			opts = append(opts, grpc.WithAuthority(v))
		case "user-agent":
			opts[1] = grpc.WithUserAgent(v)
		default:
			md.Append(k, v)
		}
	}
	conn, err := grpc.NewClient(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", target, err)
	}
	return &grpcExporter{conn: conn, client: plogotlp.NewGRPCClient(conn), md: md, target: target, secrets: secrets}, nil
}

func (e *grpcExporter) close() { e.conn.Close() }

func (e *grpcExporter) export(ctx context.Context, _ []byte, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	if len(e.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, e.md)
	}
	resp, err := e.client.Export(ctx, req)
	if err == nil {
		return resp, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return resp, fmt.Errorf("export to %s: %s", e.target, snippet(e.secrets, err.Error()))
	}
	ee := &ExportError{Endpoint: e.target, Code: st.Code(), Message: snippet(e.secrets, st.Message())}
	var retryInfo bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			retryInfo = true
			ee.After = max(ri.GetRetryDelay().AsDuration(), 0)
		}
	}
	// OTLP/gRPC: these codes are retryable; RESOURCE_EXHAUSTED only when
	// the server says when to come back.
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		ee.Retryable = true
	case codes.ResourceExhausted:
		ee.Retryable = retryInfo
	}
	return resp, ee
}
