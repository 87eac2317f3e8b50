package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// Keys maps the sha256 (hex) of each accepted key to the consumer it belongs to.
type Keys map[string]string

// Lookup returns the consumer whose key this is, if any. Only hashes are held, so the
// comparison is of digests of the caller's value, never of a secret.
func (k Keys) Lookup(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(key))
	name, ok := k[hex.EncodeToString(sum[:])]
	return name, ok
}

type hashesFile struct {
	Consumers map[string]string `json:"consumers"`
}

// parse builds Keys from the operator's hashes file and the owner's clear key files.
// A missing file counts as no keys (fail closed); a malformed one is an error, so the
// keys loaded before it stay in force.
func parse(hashes []byte, owners map[string][]byte) (Keys, error) {
	keys := Keys{}
	if len(bytes.TrimSpace(hashes)) > 0 {
		var f hashesFile
		if err := json.Unmarshal(hashes, &f); err != nil {
			return nil, fmt.Errorf("hashes: %w", err)
		}
		for name, digest := range f.Consumers {
			digest = strings.ToLower(strings.TrimPrefix(digest, "sha256:"))
			if raw, err := hex.DecodeString(digest); err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("hashes: consumer %q: not a sha256 hex digest", name)
			}
			keys[digest] = name
		}
	}
	for path, raw := range owners {
		key := strings.TrimSpace(string(raw))
		if key == "" {
			continue
		}
		sum := sha256.Sum256([]byte(key))
		keys[hex.EncodeToString(sum[:])] = "owner:" + path
	}
	return keys, nil
}

// Store holds the keys in force and reloads them when the files' bytes change.
type Store struct {
	hashesPath string
	keyPaths   []string
	current    atomic.Pointer[Keys]
	seen       atomic.Pointer[string]
}

// NewStore loads the files once; the caller decides what to do with an error.
func NewStore(hashesPath string, keyPaths []string) *Store {
	s := &Store{hashesPath: hashesPath, keyPaths: keyPaths}
	empty := Keys{}
	s.current.Store(&empty)
	none := ""
	s.seen.Store(&none)
	return s
}

// Keys returns the keys in force.
func (s *Store) Keys() Keys { return *s.current.Load() }

func read(path string) []byte {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path) // follows the Secret volume's ..data symlink
	if err != nil {
		return nil
	}
	return data
}

// Reload reads the files; it reports whether the keys changed. Unchanged bytes cost no
// parse; bytes that do not parse leave the keys in force and return the error.
func (s *Store) Reload() (bool, error) {
	hashes := read(s.hashesPath)
	owners := map[string][]byte{}
	fingerprint := sha256.New()
	fingerprint.Write(hashes)
	for _, p := range s.keyPaths {
		owners[p] = read(p)
		fingerprint.Write([]byte{0})
		fingerprint.Write(owners[p])
	}
	sum := hex.EncodeToString(fingerprint.Sum(nil))
	if sum == *s.seen.Load() {
		return false, nil
	}
	keys, err := parse(hashes, owners)
	s.seen.Store(&sum)
	if err != nil {
		return false, err
	}
	s.current.Store(&keys)
	return true, nil
}
