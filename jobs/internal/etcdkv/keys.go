package etcdkv

import (
	"bytes"
	"strconv"
)

// The key layout.
//
// Every bucket path P = [p1 ... pn] (n = 0 is the transaction's top
// level) has a key prefix
//
//	K(P) = prefix + n + "/" + esc(p1) + "/" + ... + esc(pn) + "/"
//
// and the entry k of bucket P (a value, or the marker of the nested
// bucket P+[k]) is the etcd key K(P) + esc(k). So the entries of one
// bucket are one contiguous range of etcd keys, in the order of their
// names, apart from everything nested deeper (which has a greater n):
// listing the jobs never reads their entries. For example:
//
//	/overlord/0/jobs                          "b0"  (the bucket jobs)
//	/overlord/1/jobs/0193e0c4-...             "b0"  (a job's bucket)
//	/overlord/2/jobs/0193e0c4-.../job         "v{...}"
//	/overlord/3/jobs/0193e0c4-.../minions/web1 "v{...}"
//
// esc keeps names readable and their order: every byte stands for
// itself except 0x00 (0x01 0x01), 0x01 (0x01 0x02) and '/' ('/' 0x00).
// The codes are prefix-free and ordered as the bytes they stand for, so
// escaped names sort as the names do; and no escaped name starts with
// 0x00, so the range of a bucket's entries starts at K(P)+0x01, which
// leaves out the entries of a sibling whose name continues with '/'.
//
// A value is stored as 'v' and its bytes; a bucket's marker as 'b' and
// its sequence (NextSequence) in decimal.

// MaxDepth bounds how deep buckets nest: a bucket path has at most
// MaxDepth-1 names (the store's deepest is jobs/ID/minions).
const MaxDepth = 4

const (
	tagValue  = 'v'
	tagBucket = 'b'
)

func esc(dst, name []byte) []byte {
	for _, c := range name {
		switch c {
		case 0x00:
			dst = append(dst, 0x01, 0x01)
		case 0x01:
			dst = append(dst, 0x01, 0x02)
		case '/':
			dst = append(dst, '/', 0x00)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// unesc decodes an escaped name; ok is false if it is not one.
func unesc(s []byte) ([]byte, bool) {
	if bytes.IndexByte(s, 0x01) < 0 && bytes.IndexByte(s, '/') < 0 {
		return s, true
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case 0x01, '/':
			if i+1 >= len(s) {
				return nil, false
			}
			i++
			switch {
			case c == 0x01 && s[i] == 0x01:
				out = append(out, 0x00)
			case c == 0x01 && s[i] == 0x02:
				out = append(out, 0x01)
			case c == '/' && s[i] == 0x00:
				out = append(out, '/')
			default:
				return nil, false
			}
		case 0x00:
			return nil, false
		default:
			out = append(out, c)
		}
	}
	return out, true
}

// bucketPrefix returns K(path), with depth len(path) (or depth, to name
// a deeper level of the same path: the keys depth-1 names below it).
func bucketPrefix(prefix string, depth int, path [][]byte) string {
	b := make([]byte, 0, len(prefix)+8+16*len(path))
	b = append(b, prefix...)
	b = strconv.AppendInt(b, int64(depth), 10)
	b = append(b, '/')
	for _, p := range path {
		b = esc(b, p)
		b = append(b, '/')
	}
	return string(b)
}

// childRange returns the range [start, end) of the keys that begin with
// K, a bucket prefix, and are entries (not K+0x00...).
func childRange(k string) (start, end string) {
	return k + "\x01", prefixEnd(k)
}

// prefixEnd returns the first key after every key that begins with p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // every key
}
