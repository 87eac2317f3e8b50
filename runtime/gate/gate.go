package main

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Header is where callers send their key: an HTTP header, or gRPC metadata (which is an
// HTTP/2 header by the same name).
const Header = "Conch-Endpoint-Key"

// Config is the gate's command line.
type Config struct {
	HTTPListen, HTTPUpstream string
	GRPCListen, GRPCUpstream string
	HashesFile               string
	KeyFiles                 []string
	Reload                   time.Duration
}

// open are the paths callers reach without a key: kubelet's probes and the gRPC health
// calls (Triton's own "health" group, less model readiness).
var open = map[string]bool{
	"/v2/health/live":  true,
	"/v2/health/ready": true,
	"/inference.GRPCInferenceService/ServerLive":  true,
	"/inference.GRPCInferenceService/ServerReady": true,
}

func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// refuse answers a caller without a known key: 401 over HTTP, UNAUTHENTICATED (16) as a
// trailers-only response over gRPC.
func refuse(w http.ResponseWriter, r *http.Request) {
	const message = "missing or unknown conch-endpoint-key"
	if isGRPC(r) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "16")
		w.Header().Set("Grpc-Message", message)
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", "conch-endpoint-key")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error":"` + message + `"}`))
}

// Guard admits requests with a known key (or to an open path) to next, without the key.
func Guard(keys func() Keys, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(Header)
		r.Header.Del(Header) // the key never reaches Triton (nor its logs and traces)
		if !open[r.URL.Path] {
			if _, ok := keys().Lookup(key); !ok {
				refuse(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func proxy(upstream string, h2c bool) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: upstream}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	// Pass the caller's Accept-Encoding as it is: otherwise the transport asks Triton for
	// gzip and inflates every answer itself, work nobody asked for.
	transport.DisableCompression = true
	if h2c {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true) // gRPC to Triton: HTTP/2 with prior knowledge
		transport.Protocols = &protocols
	}
	flush := time.Duration(0) // HTTP answers are written whole
	if h2c {
		flush = -1 // stream gRPC messages as they come
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:     transport,
		FlushInterval: flush,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the caller went away: nobody to answer, nothing to report
			}
			log.Printf("upstream %s: %v", upstream, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

func server(addr string, handler http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC callers speak h2c
	return &http.Server{
		Addr:              addr,
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
	}
}

// Run serves until ctx ends; an error from either listener stops both.
func Run(ctx context.Context, cfg Config, logger *log.Logger) error {
	store := NewStore(cfg.HashesFile, cfg.KeyFiles)
	if _, err := store.Reload(); err != nil {
		logger.Printf("keys: %v (no key admitted until the file parses)", err)
	}
	logger.Printf("keys: %d loaded", len(store.Keys()))
	go watch(ctx, store, cfg.Reload, logger)

	servers := []*http.Server{
		server(cfg.HTTPListen, Guard(store.Keys, proxy(cfg.HTTPUpstream, false))),
		server(cfg.GRPCListen, Guard(store.Keys, proxy(cfg.GRPCUpstream, true))),
	}
	failed := make(chan error, len(servers))
	for _, s := range servers {
		listener, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		logger.Printf("listening on %s", listener.Addr())
		go func(s *http.Server) { failed <- s.Serve(listener) }(s)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func watch(ctx context.Context, store *Store, every time.Duration, logger *log.Logger) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			changed, err := store.Reload()
			if err != nil {
				logger.Printf("keys: %v (the keys loaded before stay in force)", err)
			} else if changed {
				logger.Printf("keys: reloaded, %d in force", len(store.Keys()))
			}
		}
	}
}
