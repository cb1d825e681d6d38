package overlord

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// CopyChunk is how much of a file one Minion.WriteChunk or ReadChunk
// carries.
const CopyChunk = 1 << 20

// SplitRemote splits "TARGET:PATH" at its first colon; PATH must be
// absolute.
func SplitRemote(s string) (target, remote string, err error) {
	target, remote, ok := strings.Cut(s, ":")
	if i := strings.Index(s, ":/"); i >= 0 {
		// A target may hold a colon itself (failed:JOBID): the absolute
		// path starts after the first ":/".
		target, remote = s[:i], s[i+1:]
	}
	if !ok || target == "" || remote == "" {
		return "", "", fmt.Errorf("want TARGET:PATH, got %q", s)
	}
	if !path.IsAbs(remote) {
		return "", "", fmt.Errorf("remote path %q must be absolute", remote)
	}
	return target, path.Clean(remote), nil
}

// FileResult is a copied file's entry in a cp or fetch job.
type FileResult struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   string `json:"mode"`
}

// Copy streams a local file to dest on every minion of p, in chunks, at
// most --forks minions at once. Each minion writes it to a temporary name,
// checks its sha256, applies the local file's mode and renames it into
// place. A dest ending in / gets the local file's name. It is recorded as
// a job (file.cp).
func (o *Overlord) Copy(ctx context.Context, p *Prepared, local, dest string, onResult func(string, status.Result)) (status.Job, error) {
	f, err := os.Open(local)
	if err != nil {
		return status.Job{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return status.Job{}, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return status.Job{}, fmt.Errorf("%s is not a regular file", local)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return status.Job{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if strings.HasSuffix(dest, "/") || dest == "/" {
		dest = path.Join(dest, filepath.Base(local))
	}
	size, mode := fi.Size(), uint32(fi.Mode().Perm())
	p.Args = map[string]any{"src": local, "dest": dest, "size": size, "sha256": sum, "mode": fmt.Sprintf("%04o", mode)}
	spec := p.defaults()
	return o.run(ctx, p, func(ctx context.Context, client *rpc.Client, m jobs.Minion) status.Result {
		start := time.Now()
		err := pushFile(ctx, client, m.Name, p.JobID, local, dest, size, mode, sum, spec.Timeout)
		r := status.Result{State: status.Finished, DurationMS: time.Since(start).Milliseconds()}
		if err != nil {
			r.Error = rpc.Classify(ctx, err)
			return r
		}
		r.OK, r.Result = true, mustJSON(FileResult{Path: dest, Size: size, SHA256: sum, Mode: fmt.Sprintf("%04o", mode)})
		return r
	}, onResult, nil)
}

func pushFile(ctx context.Context, client *rpc.Client, minion, transfer, local, dest string, size int64, mode uint32, sum string, timeout time.Duration) error {
	f, err := os.Open(local)
	if err != nil {
		return status.Errorf(status.KindInternal, "%v", err)
	}
	defer f.Close()
	buf := make([]byte, CopyChunk)
	var off int64
	for {
		n, err := io.ReadFull(f, buf)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return status.Errorf(status.KindInternal, "read %s: %v", local, err)
		}
		final := off+int64(n) >= size
		params := rpc.WriteChunkParams{TransferID: transfer, Path: dest, Offset: off, Data: buf[:n], Final: final}
		if final {
			params.SHA256, params.Mode = sum, mode
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		var reply rpc.WriteChunkReply
		err = client.Call(cctx, minion, "Minion.WriteChunk", params, &reply)
		cancel()
		if err != nil {
			return err
		}
		off += int64(n)
		if final {
			return nil
		}
		if n == 0 {
			return status.Errorf(status.KindInternal, "%s shrank while it was copied", local)
		}
	}
}

// Fetch copies remote from every minion of p into localDir/<minion>/<base>,
// through a temporary file, checked against the sha256 the minion gives.
// It is recorded as a job (file.fetch).
func (o *Overlord) Fetch(ctx context.Context, p *Prepared, remote, localDir string, onResult func(string, status.Result)) (status.Job, error) {
	if path.Base(remote) == "/" {
		return status.Job{}, fmt.Errorf("fetch copies a file; %q is not one", remote)
	}
	_, statErr := os.Lstat(localDir)
	made := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		return status.Job{}, err
	}
	if fi, err := os.Stat(localDir); err != nil || !fi.IsDir() {
		return status.Job{}, fmt.Errorf("%s is not a directory", localDir)
	}
	if made {
		defer os.Remove(localDir) // only if every fetch failed and left it empty
	}
	p.Args = map[string]any{"src": remote, "dest": localDir}
	spec := p.defaults()
	return o.run(ctx, p, func(ctx context.Context, client *rpc.Client, m jobs.Minion) status.Result {
		start := time.Now()
		fr, err := pullFile(ctx, client, m.Name, remote, filepath.Join(localDir, m.Name), spec.Timeout)
		r := status.Result{State: status.Finished, DurationMS: time.Since(start).Milliseconds()}
		if err != nil {
			r.Error = rpc.Classify(ctx, err)
			return r
		}
		r.OK, r.Result = true, mustJSON(fr)
		return r
	}, onResult, nil)
}

func pullFile(ctx context.Context, client *rpc.Client, minion, remote, dir string, timeout time.Duration) (FileResult, error) {
	// A fetch that fails leaves nothing behind: not its temporary file,
	// nor the minion's directory if this fetch made it.
	_, statErr := os.Lstat(dir)
	made := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return FileResult{}, status.Errorf(status.KindInternal, "%v", err)
	}
	dest := filepath.Join(dir, path.Base(remote))
	tmp, err := atomicfile.Create(dest, atomicfile.Options{})
	if err != nil {
		if made {
			os.Remove(dir)
		}
		return FileResult{}, status.Errorf(status.KindInternal, "%v", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Abort()
			if made {
				os.Remove(dir) // only if empty: never anything else's
			}
		}
	}()
	var want string
	var mode uint32
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		var reply rpc.ReadChunkReply
		err := client.Call(cctx, minion, "Minion.ReadChunk", rpc.ReadChunkParams{Path: remote, Offset: tmp.Size(), Length: CopyChunk}, &reply)
		cancel()
		if err != nil {
			return FileResult{}, err
		}
		if tmp.Size() == 0 {
			want, mode = reply.SHA256, reply.Mode
		}
		if _, err := tmp.Write(reply.Data); err != nil {
			return FileResult{}, status.Errorf(status.KindInternal, "%v", err)
		}
		if reply.EOF {
			break
		}
		if len(reply.Data) == 0 {
			return FileResult{}, status.Errorf(status.KindModuleError, "%s shrank while it was fetched", remote)
		}
	}
	got := tmp.SHA256()
	if got != want {
		return FileResult{}, status.Errorf(status.KindModuleError, "sha256 mismatch for %s (it changed while fetched?): got %s, minion said %s", remote, got, want)
	}
	tmp.SetMode(os.FileMode(mode).Perm())
	// Once renamed the file is in place: syncing its directory is only
	// tried.
	if err := tmp.Commit(); err != nil && !errors.Is(err, atomicfile.ErrDirNotSynced) {
		return FileResult{}, status.Errorf(status.KindInternal, "%v", err)
	}
	done = true
	return FileResult{Path: dest, Size: tmp.Size(), SHA256: got, Mode: fmt.Sprintf("%04o", mode)}, nil
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // FileResult always encodes
	}
	return data
}
