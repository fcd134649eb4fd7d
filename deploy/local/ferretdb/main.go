// Command kami-ferretdb runs FerretDB 1.24 on loopback, on its PostgreSQL
// backend (-backend postgresql -postgresql-url ...) or its SQLite one
// (-backend sqlite -data DIR).
//
// `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary
// that panics at start-up (its version file is generated at release time), so
// we embed FerretDB's library package instead.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served on -debug-addr only
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27018", "TCP address to listen on")
	backend := flag.String("backend", "sqlite", "postgresql or sqlite")
	dataDir := flag.String("data", "./data", "directory holding the SQLite databases (sqlite backend)")
	postgresqlURL := flag.String("postgresql-url", "",
		"PostgreSQL URL of the postgresql backend, e.g. postgres://127.0.0.1:25432/ferretdb")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	debugAddr := flag.String("debug-addr", "",
		"if set, serve Go's profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060")
	flag.Parse()

	if *debugAddr != "" {
		go func() {
			log.Printf("kami-ferretdb profiles on http://%s/debug/pprof/", *debugAddr)
			log.Printf("debug listener: %v", http.ListenAndServe(*debugAddr, nil)) //nolint:gosec // loopback, opt-in
		}()
	}

	// FerretDB logs every connection at info level; default to warn so the
	// log file stays readable during test runs.
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		log.Fatalf("log level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  *backend,
		Logger:   logger,
	}
	var where string
	switch *backend {
	case "sqlite":
		abs, err := filepath.Abs(*dataDir)
		if err != nil {
			log.Fatalf("data dir: %v", err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			log.Fatalf("data dir: %v", err)
		}
		config.SQLiteURL = "file:" + abs + "/"
		where = "data in " + abs
	case "postgresql":
		if *postgresqlURL == "" {
			log.Fatalf("-backend postgresql needs -postgresql-url")
		}
		config.PostgreSQLURL = *postgresqlURL
		where = "PostgreSQL at " + *postgresqlURL
	default:
		log.Fatalf("-backend %q: want postgresql or sqlite", *backend)
	}

	f, err := ferretdb.New(config)
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("kami-ferretdb (%s backend) listening on %s, %s, log level %s", *backend, *listen, where, level)
	if err := f.Run(ctx); err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
}
