package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// The files the installer puts on the node (binaries, wrapper scripts, the
// containerd drop-in) are recorded in its state file, with a copy of any
// file of the same path that was there before: uninstall removes them and
// puts those copies back.

// record is the installer's state file.
type record struct {
	// Files maps each host path written to whether a file was there
	// before (then kept in the state dir's backup/).
	Files map[string]bool `json:"files"`
	// Dirs are the directories made for them, deepest first.
	Dirs []string `json:"dirs,omitempty"`
}

// host is the node's filesystem as the installer sees it: root is where
// the host's / is mounted (/host in the DaemonSet), paths are the host's.
type host struct {
	root  string
	state string // the installer's state dir (a host path)
}

func (h host) path(p string) string { return filepath.Join(h.root, p) }

func (h host) recordFile() string { return h.path(filepath.Join(h.state, "state.json")) }

func (h host) backup(p string) string {
	return h.path(filepath.Join(h.state, "backup", filepath.Clean(p)))
}

func (h host) load() (record, error) {
	r := record{Files: map[string]bool{}}
	data, err := os.ReadFile(h.recordFile())
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", h.recordFile(), err)
	}
	if r.Files == nil {
		r.Files = map[string]bool{}
	}
	return r, nil
}

func (h host) save(r record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(h.recordFile(), append(data, '\n'), 0o600)
}

// read returns a host file's content and whether it exists.
func (h host) read(p string) (string, bool, error) {
	data, err := os.ReadFile(h.path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	return string(data), err == nil, err
}

// put writes a host file the installer owns (recorded, the previous file
// saved first); it reports whether the content changed.
func (h host) put(r *record, p string, content []byte, mode fs.FileMode) (bool, error) {
	old, err := os.ReadFile(h.path(p))
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if _, ours := r.Files[p]; !ours {
		if exists {
			st, err := os.Stat(h.path(p))
			if err != nil {
				return false, err
			}
			if err := writeAtomic(h.backup(p), old, st.Mode().Perm()); err != nil {
				return false, fmt.Errorf("keeping %s: %w", p, err)
			}
		}
		r.Files[p] = exists
		r.Dirs = append(h.missingDirs(filepath.Dir(p)), r.Dirs...)
		// Recorded before the file is written: an installer killed
		// now leaves nothing its uninstall does not know of.
		if err := h.save(*r); err != nil {
			return false, err
		}
	}
	if exists && bytes.Equal(old, content) {
		return false, os.Chmod(h.path(p), mode)
	}
	return true, writeAtomic(h.path(p), content, mode)
}

// edit writes a host file the installer edits in place (not recorded:
// its edits are marked in it); remove removes it.
func (h host) edit(p, content string, remove bool) (bool, error) {
	old, exists, err := h.read(p)
	if err != nil {
		return false, err
	}
	if remove {
		if !exists {
			return false, nil
		}
		return true, os.Remove(h.path(p))
	}
	if exists && old == content {
		return false, nil
	}
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(h.path(p)); err == nil {
		mode = st.Mode().Perm()
	}
	return true, writeAtomic(h.path(p), []byte(content), mode)
}

// restoreAll removes every recorded file, puts back the ones it replaced,
// and removes the state dir.
func (h host) restoreAll() error {
	r, err := h.load()
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(r.Files))
	for p := range r.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := h.restore(p, r.Files[p]); err != nil {
			return err
		}
	}
	for _, d := range r.Dirs {
		// Only if empty: what others put there since stays.
		_ = os.Remove(h.path(d))
	}
	return os.RemoveAll(h.path(h.state))
}

// missingDirs lists dir and its ancestors that do not exist, deepest first.
func (h host) missingDirs(dir string) []string {
	var out []string
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(h.path(d)); err == nil {
			break
		}
		out = append(out, d)
	}
	return out
}

func (h host) restore(p string, hadFile bool) error {
	if !hadFile {
		if err := os.Remove(h.path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := os.ReadFile(h.backup(p))
	if err != nil {
		return fmt.Errorf("the file %s replaced: %w", p, err)
	}
	st, err := os.Stat(h.backup(p))
	if err != nil {
		return err
	}
	return writeAtomic(h.path(p), data, st.Mode().Perm())
}

// writeAtomic writes a file through a temporary one renamed over it: a
// reader (containerd, a shim starting clawrun) never sees half a file.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".clawrun-deploy-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
