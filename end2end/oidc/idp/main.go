// The OpenID provider of nkvm's OIDC end-to-end test: zitadel/oidc's example provider
// (github.com/zitadel/oidc/v3/example/server, same storage, clients and demo users), listening on
// 127.0.0.1 only instead of every interface. Environment as upstream: PORT (default 9998),
// REDIRECT_URI (comma-separated), USERS_FILE (optional JSON users). Issuer: http://localhost:PORT/.
// Clients: `web` (secret `secret`, client_secret_basic), `api`, `native` (public).
// Demo users (password `verysecure`): test-user@localhost (id1), test-user2 (id2).
package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/zitadel/oidc/v3/example/server/config"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

func main() {
	cfg := config.FromEnvVars(&config.Config{Port: "9998"})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	issuer := fmt.Sprintf("http://localhost:%s/", cfg.Port)

	storage.RegisterClients(
		storage.NativeClient("native", cfg.RedirectURI...),
		storage.WebClient("web", "secret", cfg.RedirectURI...),
		storage.WebClient("api", "secret", cfg.RedirectURI...),
	)
	var users storage.UserStore
	if cfg.UsersFile == "" {
		users = storage.NewUserStore(issuer)
	} else {
		var err error
		if users, err = storage.StoreFromFile(cfg.UsersFile); err != nil {
			logger.Error("cannot read the users file", "error", err)
			os.Exit(1)
		}
	}
	router := exampleop.SetupServer(issuer, storage.NewStorage(users), logger, false)
	server := &http.Server{Addr: "127.0.0.1:" + cfg.Port, Handler: router}
	logger.Info("listening", "addr", server.Addr, "issuer", issuer)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		logger.Error("server terminated", "error", err)
		os.Exit(1)
	}
}
