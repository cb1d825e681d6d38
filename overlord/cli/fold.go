package cli

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// foldNames writes names the way clush and pdsh do: names that differ
// only by a number share one bracket expression of ranges and lists, the
// numbers' zero padding kept (web01, web02, web03, web07 give
// web[01-03,07]). The number folded is the last run of digits in a name,
// so web1.example.org and web2.example.org give web[1-2].example.org.
// Names with different prefixes or suffixes, and names without digits,
// stay separate; the terms are comma-separated, sorted.
func foldNames(names []string) string {
	type key struct{ prefix, suffix string }
	nums := map[key][]string{}
	var keys []key
	var plain []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		end := strings.LastIndexAny(n, "0123456789") + 1
		if end == 0 {
			plain = append(plain, n)
			continue
		}
		start := end
		for start > 0 && n[start-1] >= '0' && n[start-1] <= '9' {
			start--
		}
		k := key{n[:start], n[end:]}
		if _, ok := nums[k]; !ok {
			keys = append(keys, k)
		}
		nums[k] = append(nums[k], n[start:end])
	}
	terms := plain
	for _, k := range keys {
		digits := nums[k]
		if len(digits) == 1 {
			terms = append(terms, k.prefix+digits[0]+k.suffix)
			continue
		}
		terms = append(terms, k.prefix+"["+foldNumbers(digits)+"]"+k.suffix)
	}
	sort.Strings(terms)
	return strings.Join(terms, ",")
}

// foldNumbers folds digit strings into ranges and lists: 1 2 3 7 gives
// 1-3,7; 08 09 10 gives 08-10. A range keeps its padding: it goes on
// only while the next number, written as wide as the range's first, is
// one of the strings (so 1 and 01 stay apart: 1-2,01).
func foldNumbers(digits []string) string {
	type num struct {
		s  string
		v  uint64
		ok bool // fits in a uint64
	}
	ns := make([]num, len(digits))
	for i, d := range digits {
		v, err := strconv.ParseUint(d, 10, 64)
		ns[i] = num{d, v, err == nil}
	}
	sort.Slice(ns, func(i, j int) bool {
		a, b := ns[i], ns[j]
		if a.ok != b.ok {
			return a.ok
		}
		if !a.ok {
			return len(a.s) < len(b.s) || len(a.s) == len(b.s) && a.s < b.s
		}
		if a.v != b.v {
			return a.v < b.v
		}
		return len(a.s) < len(b.s)
	})
	// Each range waits for the string of the number after its last,
	// written as wide as its first if that one is zero-padded.
	type run struct{ first, last string }
	var runs []run
	waiting := map[string]int{}
	following := func(first string, v uint64) string {
		w := strconv.FormatUint(v+1, 10)
		if len(first) > 1 && first[0] == '0' {
			for len(w) < len(first) {
				w = "0" + w
			}
		}
		return w
	}
	for _, n := range ns {
		if i, ok := waiting[n.s]; ok && n.ok {
			delete(waiting, n.s)
			runs[i].last = n.s
			waiting[following(runs[i].first, n.v)] = i
			continue
		}
		runs = append(runs, run{n.s, n.s})
		if n.ok && n.v < math.MaxUint64 {
			waiting[following(n.s, n.v)] = len(runs) - 1
		}
	}
	var b strings.Builder
	for _, r := range runs {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.first)
		if r.last != r.first {
			b.WriteByte('-')
			b.WriteString(r.last)
		}
	}
	return b.String()
}

// resultGroups collects --group's blocks: minions whose blocks are the
// same (status and output, not the duration) form one group.
type resultGroups struct {
	byKey map[string]*resultGroup
}

// A resultGroup is the minions that printed one block.
type resultGroup struct {
	names []string
	b     block
}

func (g *resultGroups) add(name string, b block) {
	if g.byKey == nil {
		g.byKey = map[string]*resultGroup{}
	}
	k := b.key()
	if rg, ok := g.byKey[k]; ok {
		rg.names = append(rg.names, name)
		return
	}
	g.byKey[k] = &resultGroup{names: []string{name}, b: b}
}

// sorted returns the groups in the order of their first minion's name,
// each group's names sorted.
func (g *resultGroups) sorted() []*resultGroup {
	out := make([]*resultGroup, 0, len(g.byKey))
	for _, rg := range g.byKey {
		sort.Strings(rg.names)
		out = append(out, rg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].names[0] < out[j].names[0] })
	return out
}
