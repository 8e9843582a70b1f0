// Package jsonfile writes and reads clawrun's JSON state files (a
// container's policy, its egress filter's record, config and status, a
// network namespace's record). A file is always replaced whole: a reader,
// or a clawrun that starts after a crash, finds the old document or the
// new one, never a torn one.
package jsonfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with v as JSON, with permissions perm: it writes a
// temporary file in the same directory (so that the rename stays on one
// filesystem), syncs it, and renames it over path. On failure path is
// unchanged and the temporary file is gone.
//
// The sync costs nothing where state usually lives (/run is tmpfs), and
// matters where it does not (a --root or a log directory on disk): without
// it a crash can leave the rename done and the data not, an empty file
// where the old document was. The directory is not synced: after a crash
// it holds the old document or the new one, both whole, which is all a
// reader needs.
func Write(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteData(path, data, perm)
}

// WriteData replaces path with a document already encoded (one that was
// validated as read, say), the same way as Write.
func WriteData(path string, data []byte, perm os.FileMode) error {
	return replace(path, data, perm, true)
}

// WriteUnsynced is Write without the sync, for a file rewritten so often
// (every second) that syncing it would cost more than losing it: after a
// crash it may be empty, and its reader must take that for no document.
func WriteUnsynced(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return replace(path, data, perm, false)
}

// replace writes data to a temporary file beside path and renames it
// over path, syncing it first if sync.
func replace(path string, data []byte, perm os.FileMode, sync bool) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// A dot name: globs over the directory (its *.json records) skip it.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	if err := fill(tmp, data, perm, sync); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// fill writes data into a new temporary file, gives it its permissions,
// syncs it if sync, and closes it.
func fill(f *os.File, data []byte, perm os.FileMode, sync bool) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Read decodes the JSON document at path into v. A missing file is an
// error that matches fs.ErrNotExist.
func Read(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
