package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func writeHashes(t *testing.T, path string, consumers map[string]string) {
	t.Helper()
	body := `{"consumers": {`
	first := true
	for name, key := range consumers {
		if !first {
			body += ","
		}
		first = false
		body += `"` + name + `": "` + digest(key) + `"`
	}
	if err := os.WriteFile(path, []byte(body+"}}"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// upstream records what reached it: the gate must strip the key.
func upstream(t *testing.T) (*httptest.Server, *string) {
	seen := new(string)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*seen = r.Header.Get(Header)
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s, seen
}

func call(t *testing.T, h http.Handler, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestKeysAdmitKnownConsumersOnly(t *testing.T) {
	dir := t.TempDir()
	hashes, owner := filepath.Join(dir, "hashes.json"), filepath.Join(dir, "key")
	writeHashes(t, hashes, map[string]string{"team-b": "key-b"})
	if err := os.WriteFile(owner, []byte("owner-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := NewStore(hashes, []string{owner})
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	up, seen := upstream(t)
	gate := Guard(store.Keys, proxy(up.Listener.Addr().String(), false))

	for _, tc := range []struct {
		path string
		key  string
		want int
	}{
		{"/v2/models/m/infer", "key-b", 200},
		{"/v2/models/m/infer", "owner-key", 200}, // the owner's clear key file, trimmed
		{"/v2/models/m/infer", "", 401},
		{"/v2/models/m/infer", "wrong", 401},
		{"/v2/models/m", "", 401}, // metadata too
		{"/v2/health/ready", "", 200},
		{"/v2/health/live", "", 200},
	} {
		header := map[string]string{}
		if tc.key != "" {
			header["conch-endpoint-key"] = tc.key
		}
		*seen = "unset"
		if got := call(t, gate, tc.path, header).Code; got != tc.want {
			t.Errorf("%s with %q: %d, want %d", tc.path, tc.key, got, tc.want)
		}
		if tc.want == 200 && *seen != "" {
			t.Errorf("%s: the key reached the upstream: %q", tc.path, *seen)
		}
	}
}

func TestReloadRotatesAndRevokes(t *testing.T) {
	hashes := filepath.Join(t.TempDir(), "hashes.json")
	writeHashes(t, hashes, map[string]string{"a": "old-a", "b": "key-b"})
	store := NewStore(hashes, nil)
	if changed, err := store.Reload(); !changed || err != nil {
		t.Fatalf("first load: %v %v", changed, err)
	}
	if changed, _ := store.Reload(); changed {
		t.Fatal("unchanged bytes reloaded")
	}
	writeHashes(t, hashes, map[string]string{"a": "new-a"}) // a rotated, b revoked
	if changed, err := store.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	for key, want := range map[string]bool{"old-a": false, "new-a": true, "key-b": false} {
		if _, ok := store.Keys().Lookup(key); ok != want {
			t.Errorf("%s admitted=%v, want %v", key, ok, want)
		}
	}
	if err := os.WriteFile(hashes, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err == nil {
		t.Fatal("a malformed file parsed")
	}
	if _, ok := store.Keys().Lookup("new-a"); !ok {
		t.Fatal("a malformed file dropped the keys in force")
	}
}

func TestMissingFileAdmitsNobody(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "absent"), nil)
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(store.Keys()) != 0 {
		t.Fatal("keys from nowhere")
	}
}

func TestGRPCRefusalIsUnauthenticated(t *testing.T) {
	gate := Guard(func() Keys { return Keys{} }, http.NotFoundHandler())
	r := httptest.NewRequest(http.MethodPost, "/inference.GRPCInferenceService/ModelInfer", nil)
	r.ProtoMajor = 2
	r.Header.Set("Content-Type", "application/grpc")
	w := httptest.NewRecorder()
	gate.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("Grpc-Status") != "16" {
		t.Fatalf("got %d grpc-status %q", w.Code, w.Header().Get("Grpc-Status"))
	}
}
