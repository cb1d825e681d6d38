package minion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/overlordhq/overlord/internal/atomicfile"
	"github.com/overlordhq/overlord/modules/file"
	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// Limits on file transfers: in progress at once, in all and of one
// identity; and how long one may stay idle.
const (
	maxTransfers            = 64
	maxTransfersPerIdentity = 16
	transferIdleTime        = 5 * time.Minute
)

// transfers holds the files being streamed to this minion: each goes to a
// temporary file beside its destination until its last chunk is checked.
type transfers struct {
	mu    sync.Mutex
	open  map[string]*transfer
	stop  chan struct{}
	done  chan struct{}
	start sync.Once
	close sync.Once
}

type transfer struct {
	path string
	f    *atomicfile.File
	last time.Time
}

func newTransfers() *transfers {
	return &transfers{open: map[string]*transfer{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// run drops transfers left idle (an overlord that died mid-copy) until
// Close.
func (t *transfers) run() {
	t.start.Do(func() {
		go func() {
			defer close(t.done)
			tick := time.NewTicker(time.Minute)
			defer tick.Stop()
			for {
				select {
				case <-t.stop:
					return
				case <-tick.C:
					t.expire(time.Now().Add(-transferIdleTime))
				}
			}
		}()
	})
}

// Close stops the sweeper and removes unfinished transfers.
func (t *transfers) Close() {
	t.close.Do(func() {
		close(t.stop)
		t.start.Do(func() { close(t.done) }) // never started
		<-t.done
		t.expire(time.Now().Add(time.Hour))
	})
}

func (t *transfers) expire(before time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, tr := range t.open {
		if tr.last.Before(before) {
			tr.abort()
			delete(t.open, k)
		}
	}
}

func (tr *transfer) abort() {
	tr.f.Abort()
}

// maxPath bounds the path of a transfer (Linux's PATH_MAX).
const maxPath = 4096

func checkPath(p string) error {
	if len(p) > maxPath {
		return status.Errorf(status.KindBadArgs, "path of %d bytes, at most %d", len(p), maxPath)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return status.Errorf(status.KindBadArgs, "path %q must be absolute and clean", p)
	}
	return nil
}

// write handles one chunk.
func (t *transfers) write(caller string, p *rpc.WriteChunkParams) (rpc.WriteChunkReply, error) {
	if err := checkPath(p.Path); err != nil {
		return rpc.WriteChunkReply{}, err
	}
	if p.TransferID == "" || len(p.Data) > rpc.MaxChunk {
		return rpc.WriteChunkReply{}, status.Errorf(status.KindBadArgs, "a chunk needs a transfer_id and at most %d bytes", rpc.MaxChunk)
	}
	key := caller + "\x00" + p.TransferID + "\x00" + p.Path
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.open[key]
	if p.Offset == 0 && tr != nil { // a retried start: begin again
		tr.abort()
		delete(t.open, key)
		tr = nil
	}
	if tr == nil {
		if p.Offset != 0 {
			return rpc.WriteChunkReply{}, status.Errorf(status.KindBadArgs, "no transfer %s of %s in progress at offset %d", p.TransferID, p.Path, p.Offset)
		}
		if len(t.open) >= maxTransfers {
			return rpc.WriteChunkReply{}, status.Errorf(status.KindModuleError, "too many transfers in progress (%d)", maxTransfers)
		}
		mine := 0
		for k := range t.open {
			if strings.HasPrefix(k, caller+"\x00") {
				mine++
			}
		}
		if mine >= maxTransfersPerIdentity {
			return rpc.WriteChunkReply{}, status.Errorf(status.KindModuleError, "too many transfers of %s in progress (%d)", caller, maxTransfersPerIdentity)
		}
		var err error
		if tr, err = begin(p.Path); err != nil {
			return rpc.WriteChunkReply{}, err
		}
		t.open[key] = tr
	}
	if p.Offset != tr.f.Size() {
		return rpc.WriteChunkReply{}, status.Errorf(status.KindBadArgs, "chunk at offset %d, want %d", p.Offset, tr.f.Size())
	}
	if _, err := tr.f.Write(p.Data); err != nil {
		tr.abort()
		delete(t.open, key)
		return rpc.WriteChunkReply{}, status.Errorf(status.KindModuleError, "write %s: %v", p.Path, err)
	}
	tr.last = time.Now()
	if !p.Final {
		return rpc.WriteChunkReply{Written: tr.f.Size()}, nil
	}
	delete(t.open, key)
	sum, err := tr.commit(p.SHA256, fs.FileMode(p.Mode).Perm())
	if err != nil {
		return rpc.WriteChunkReply{}, err
	}
	return rpc.WriteChunkReply{Written: tr.f.Size(), SHA256: sum}, nil
}

func begin(path string) (*transfer, error) {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, status.Errorf(status.KindModuleError, "directory %s does not exist", dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, status.Errorf(status.KindModuleError, "%s is a directory", path)
	}
	f, err := atomicfile.Create(path, atomicfile.Options{})
	if err != nil {
		return nil, status.Errorf(status.KindModuleError, "%v", err)
	}
	return &transfer{path: path, f: f, last: time.Now()}, nil
}

// commit checks the digest, applies the mode, syncs and renames the
// temporary file into place (atomicfile). On any failure nothing is left
// behind.
func (tr *transfer) commit(want string, mode fs.FileMode) (string, error) {
	got := tr.f.SHA256()
	if want != got {
		tr.abort()
		return "", status.Errorf(status.KindModuleError, "sha256 mismatch for %s: got %s, sent %s; nothing written", tr.path, got, want)
	}
	tr.f.SetMode(mode)
	// Once renamed the file is in place: syncing its directory is only
	// tried.
	if err := tr.f.Commit(); err != nil && !errors.Is(err, atomicfile.ErrDirNotSynced) {
		return "", status.Errorf(status.KindModuleError, "%v", err)
	}
	return got, nil
}

// readChunk reads part of a file; at offset 0 it also returns the whole
// file's digest, reading it until ctx is done.
func readChunk(ctx context.Context, p *rpc.ReadChunkParams) (rpc.ReadChunkReply, error) {
	if err := checkPath(p.Path); err != nil {
		return rpc.ReadChunkReply{}, err
	}
	if p.Length <= 0 || p.Length > rpc.MaxChunk || p.Offset < 0 {
		return rpc.ReadChunkReply{}, status.Errorf(status.KindBadArgs, "length must be 1..%d and offset not negative", rpc.MaxChunk)
	}
	// OpenRegular does not block on a FIFO and refuses anything that is
	// not a regular file.
	f, fi, err := file.OpenRegular(p.Path)
	if err != nil {
		return rpc.ReadChunkReply{}, status.Errorf(status.KindModuleError, "%v", err)
	}
	defer f.Close()
	reply := rpc.ReadChunkReply{Size: fi.Size(), Mode: uint32(fi.Mode().Perm())}
	if p.Offset == 0 {
		h := sha256.New()
		if _, err := io.CopyBuffer(h, file.ContextReader(ctx, f), make([]byte, 1<<20)); err != nil {
			if ctx.Err() != nil {
				return rpc.ReadChunkReply{}, ctxError(ctx.Err(), "reading "+p.Path)
			}
			return rpc.ReadChunkReply{}, status.Errorf(status.KindModuleError, "%v", err)
		}
		reply.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	buf := make([]byte, p.Length)
	n, err := f.ReadAt(buf, p.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return rpc.ReadChunkReply{}, status.Errorf(status.KindModuleError, "%v", err)
	}
	reply.Data = buf[:n]
	reply.EOF = p.Offset+int64(n) >= fi.Size()
	return reply, nil
}

// ctxError is the error of work stopped because ctx ended: timeout at a
// deadline, cancelled otherwise (the client went away).
func ctxError(err error, doing string) *status.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(status.KindTimeout, "%s: stopped at the deadline", doing)
	}
	return status.Errorf(status.KindCancelled, "%s: cancelled", doing)
}
