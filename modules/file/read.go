package file

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// hashes are the algorithms checksum offers. md5 and sha1 are there to
// compare with checksums published elsewhere, not for security.
var hashes = map[string]func() hash.Hash{
	"sha256": sha256.New,
	"sha512": sha512.New,
	"sha1":   sha1.New,
	"md5":    md5.New,
}

// OpenRegular opens path for reading and checks that it is a regular file.
// O_NONBLOCK keeps a FIFO from blocking the open until a writer comes; it
// does nothing to a regular file.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is a %s, not a regular file", path, describeType(fi.Mode()))
	}
	return f, fi, nil
}

func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// Checksum returns the sha256 of the regular file at path, in hex. It
// reads the file as a stream.
func Checksum(path string) (string, error) {
	sum, _, err := hashFile(context.Background(), path, "sha256")
	return sum, err
}

// hashFile hashes the regular file at path with algo, stopping early if
// ctx ends. It returns the digest in hex and the number of bytes read.
func hashFile(ctx context.Context, path, algo string) (string, int64, error) {
	newHash, ok := hashes[algo]
	if !ok {
		return "", 0, fmt.Errorf("unknown hash %q", algo)
	}
	f, _, err := OpenRegular(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := newHash()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ContextReader returns a reader of r that fails once ctx has ended, so a
// long read (a whole-file digest) stops with the request that asked.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

// ctxReader is a reader that fails once its context has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
