package etcdkv

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// rewatchPause is how long Watch waits before watching again after etcd
// ended a watch (a member lost, the revision compacted).
const rewatchPause = time.Second

// Watch returns a channel that receives a value whenever a key of the
// bucket at path, or of a bucket nested in it, changes in etcd: a write
// by any process sharing the cluster. Changes that come while the last
// one has not been taken fold into it. When etcd ends the watch (the
// member lost its leader, the revision was compacted) the channel also
// receives a value, since a change may have been missed, and Watch
// watches again. It also receives one as soon as each watch is on, for
// what changed before. It stops, and closes the channel, when ctx ends.
func (d *DB) Watch(ctx context.Context, path ...[]byte) <-chan struct{} {
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	levels := 0
	for depth := len(path); depth < MaxDepth; depth++ {
		levels++
		start, end := childRange(bucketPrefix(d.prefix, depth, path))
		go func() {
			defer func() { done <- struct{}{} }()
			d.watchRange(ctx, start, end, signal)
		}()
	}
	go func() {
		for range levels {
			<-done
		}
		close(ch)
	}()
	return ch
}

// watchRange calls signal for each change of a key in [start, end) until
// ctx ends, watching again whenever etcd ends the watch.
func (d *DB) watchRange(ctx context.Context, start, end string, signal func()) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range d.cli.Watch(wctx, start, clientv3.WithRange(end), clientv3.WithCreatedNotify()) {
			// Created: a change made before the watch began is not
			// sent, so the caller reads again now that it is on.
			if resp.Created || resp.Err() != nil || len(resp.Events) > 0 {
				signal()
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		signal() // the watch ended: something may have been missed
		t := time.NewTimer(rewatchPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
