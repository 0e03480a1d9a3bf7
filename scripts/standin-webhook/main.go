// Command standin-webhook is the webhook receiver of
// scripts/new-user-session.sh: a stand-in for the SIEM and the new webhook
// the README's examples send events to. It answers every POST with 200,
// except that, with -reject N, it answers 400 until it has rejected N
// events (a receiver that is misconfigured at first, so that the README's
// dead-letter commands have dead letters to show and re-drive). Every body
// is appended to -log as one line: "<path> <status> <body>".
//
//	go run ./scripts/standin-webhook -listen 127.0.0.1:18090 -log bodies.log -reject 50
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "standin-webhook:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18090", "`address` to serve on")
	logPath := flag.String("log", "webhook-bodies.log", "`file` every request body is appended to")
	reject := flag.Int("reject", 0, "answer 400 until this many `events` were rejected")
	flag.Parse()
	out, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	rejected := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var batch struct {
			Events []json.RawMessage `json:"events"`
		}
		_ = json.Unmarshal(body, &batch)
		mu.Lock()
		status := http.StatusOK
		if rejected < *reject {
			status = http.StatusBadRequest
			rejected += len(batch.Events)
		}
		fmt.Fprintf(out, "%s %d %s\n", r.URL.Path, status, body)
		mu.Unlock()
		w.WriteHeader(status)
		if status != http.StatusOK {
			fmt.Fprintln(w, "rejected by the stand-in receiver (-reject)")
		}
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("standin-webhook listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
