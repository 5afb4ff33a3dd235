package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// agentTarget is how garpd status, forget and announce find the running
// agent's control endpoint: --agent (HOST:PORT as control.listen writes
// it, a URL, or unix:PATH), or control.listen and control.token_file of
// the config given with -c, or $GARPD_AGENT, or the default socket.
// agentEnv names the environment variable that gives the agent's control
// endpoint when neither --agent nor -c does: for shells and tools that
// talk to one agent that does not listen on the default socket.
const agentEnv = "GARPD_AGENT"

type agentTarget struct {
	agent, config string
}

func (t *agentTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.agent, "agent", "", "the agent's control endpoint: HOST:PORT, http://HOST:PORT or unix:PATH (default: -c's control.listen, else $"+agentEnv+", else "+defaultControlListen+")")
	cmd.Flags().StringVarP(&t.config, "config", "c", "", "the agent's config: its control.listen and control.token_file")
}

// resolve is the base URL, the client that reaches it and the token.
func (t agentTarget) resolve() (string, *http.Client, []byte, error) {
	addr, token := t.agent, []byte(nil)
	if t.config != "" {
		l, err := loadConfig(t.config)
		if err != nil {
			return "", nil, nil, err
		}
		if addr == "" || addr == "config" {
			addr = l.cfg.Control.Listen
		}
		token = l.token
	}
	addr = cmp.Or(addr, os.Getenv(agentEnv), defaultControlListen)
	client := &http.Client{Timeout: 10 * time.Second}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}
		return "http://garpd", client, token, nil
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/"), client, token, nil
}

// call asks the agent: a GET, or a POST of v as JSON when v is not nil.
// It returns the answer's body.
func (t agentTarget) call(ctx context.Context, method, path, what string, v any) ([]byte, error) {
	base, client, token, err := t.resolve()
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, usageError(fmt.Errorf("--agent %q: %w", t.agent, err))
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != nil {
		req.Header.Set("Authorization", "Bearer "+string(token))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the agent at %s %s (is garpd agent running, and is its control.listen this address? -c FILE reads it from the config): %w", base, what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the agent's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent at %s answered %s: %s", base, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
