package minion

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/rpc/v2/json2"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// ReadChunk of a FIFO is refused at once rather than waiting for a
// writer for ever.
func TestReadChunkRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := auditedService(t, t.TempDir())
	done := make(chan error, 1)
	go func() {
		var reply rpc.ReadChunkReply
		done <- svc.ReadChunk(asIdentity("op"), &rpc.ReadChunkParams{Path: fifo, Length: 10}, &reply)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadChunk of a FIFO: %v, want not a regular file", err)
		}
	case <-time.After(5 * time.Second):
		// Let the open return, so the goroutine ends.
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("ReadChunk of a FIFO hung")
	}
}

// The whole-file digest at offset 0 stops when the request's context is
// done.
func TestReadChunkDigestStopsWithTheRequest(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 64<<20); err != nil {
		t.Fatal(err)
	}
	svc := auditedService(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var reply rpc.ReadChunkReply
	err := svc.ReadChunk(withCaller(asIdentity("op").WithContext(ctx), who{identity: "op"}), &rpc.ReadChunkParams{Path: big, Length: 10}, &reply)
	if rpcKind(err) != status.KindCancelled {
		t.Errorf("ReadChunk with its request gone: %v (digest %q), want kind cancelled", err, reply.SHA256)
	}
	// With the request alive, it reads.
	err = svc.ReadChunk(asIdentity("op"), &rpc.ReadChunkParams{Path: big, Length: 10}, &reply)
	if err != nil || len(reply.Data) != 10 || reply.Size != 64<<20 || len(reply.SHA256) != 64 {
		t.Errorf("ReadChunk: %v, %d bytes of %d, digest %q", err, len(reply.Data), reply.Size, reply.SHA256)
	}
}

// rpcKind returns the kind of an error a Service method returned.
func rpcKind(err error) status.Kind {
	var je *json2.Error
	if !errors.As(err, &je) {
		return status.KindOf(err)
	}
	if d, ok := je.Data.(rpc.ErrorData); ok {
		return d.Kind
	}
	return ""
}
