// Command conch-gate admits only callers with a known key to a Triton server in the same
// pod. Triton holds one key per API group (its restricted-API options), so per-consumer
// keys need something in front of it: this gate. It listens where Triton used to (HTTP
// and gRPC over h2c), checks the conch-endpoint-key header against sha256 hashes the
// operator writes into a mounted Secret (never the keys themselves), strips the header,
// and proxies to Triton on 127.0.0.1. Health endpoints stay open for kubelet's probes.
// The key files are read again whenever their bytes change (Secret volumes are updated
// atomically by the kubelet), so adding, rotating or revoking a key needs no restart.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var cfg Config
	var ownerKeys listFlag
	flag.StringVar(&cfg.HTTPListen, "http-listen", ":8000", "address for HTTP/1.1 callers")
	flag.StringVar(&cfg.HTTPUpstream, "http-upstream", "127.0.0.1:18000", "Triton's HTTP address")
	flag.StringVar(&cfg.GRPCListen, "grpc-listen", ":8001", "address for gRPC (h2c) callers")
	flag.StringVar(&cfg.GRPCUpstream, "grpc-upstream", "127.0.0.1:18001", "Triton's gRPC address")
	flag.StringVar(&cfg.HashesFile, "hashes", "", "JSON file {\"consumers\": {name: sha256 hex}}")
	flag.Var(&ownerKeys, "key-file", "a file holding one key in clear (the owner's Secret); repeatable")
	flag.DurationVar(&cfg.Reload, "reload", time.Second, "how often the key files are checked for changes")
	flag.Parse()
	cfg.KeyFiles = ownerKeys

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, cfg, log.Default()); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("conch-gate: %v", err)
	}
}
