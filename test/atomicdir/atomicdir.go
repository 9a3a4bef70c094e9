// Package atomicdir updates a directory the way the kubelet's atomic writer updates a Secret
// volume, so tests can exercise readers of mounted Secrets against the real sequence of renames.
//
// A volume directory holds a timestamped data directory ("..2006_01_02_15_04_05.NNNN"), a
// symlink "..data" to it, and one user-visible symlink per key ("KEY -> ..data/KEY"). An update
// writes a new timestamped directory, creates the user-visible links of new keys (dangling until
// the swap), points "..data_tmp" at the new directory, renames "..data_tmp" over "..data" (the one
// atomic step), removes the links of keys that went away, then deletes the old directory.
package atomicdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	dataLink    = "..data"
	newDataLink = "..data_tmp"
)

// Write replaces the content of dir with files (key to content), creating dir if needed.
func Write(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for key := range files {
		if key == "" || strings.HasPrefix(key, "..") || strings.ContainsRune(key, '/') {
			return fmt.Errorf("atomicdir: invalid key %q", key)
		}
	}
	oldTS, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var stale []string
	if oldTS != "" {
		entries, err := os.ReadDir(filepath.Join(dir, oldTS))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			if _, keep := files[e.Name()]; !keep {
				stale = append(stale, e.Name())
			}
		}
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	for key, content := range files {
		if err := os.WriteFile(filepath.Join(ts, key), content, 0o644); err != nil {
			return err
		}
	}
	for key := range files {
		link := filepath.Join(dir, key)
		if _, err := os.Readlink(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join(dataLink, key), link); err != nil {
				return err
			}
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, newDataLink)); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, newDataLink), filepath.Join(dir, dataLink)); err != nil {
		return err
	}
	for _, key := range stale {
		if err := os.Remove(filepath.Join(dir, key)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if oldTS != "" {
		return os.RemoveAll(filepath.Join(dir, oldTS))
	}
	return nil
}

// Clear removes every key, the data link and the data directory, leaving dir empty, as a
// volume looks before its first write or while the kubelet tears it down.
func Clear(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
