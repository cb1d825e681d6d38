package modules

// Typo returns the MODULE.METHOD the registry has that module.method is
// most likely a misspelling of, and whether there is one: a module name
// one or two edits from one of the registry's (comand.run), or, in a
// module the registry has, a method one or two edits from one of its
// methods (test.pnig). A name further from everything is not a typo (a
// plugin the registry does not know, a method of a newer minion), nor is
// a name the registry has.
func (r *Registry) Typo(module, method string) (string, bool) {
	if m, ok := r.module(module); ok {
		best, ok := closest(method, methodNames(m))
		if !ok || best == method {
			return "", false
		}
		return module + "." + best, true
	}
	best, ok := closest(module, r.Names())
	if !ok {
		return "", false
	}
	m, _ := r.module(best)
	names := methodNames(m)
	for _, n := range names {
		if n == method {
			return best + "." + method, true
		}
	}
	if alt, ok := closest(method, names); ok {
		return best + "." + alt, true
	}
	return best, true
}

func methodNames(m Module) []string {
	var names []string
	for _, meth := range m.Methods() {
		names = append(names, meth.Name)
	}
	return names
}

// Closest returns the candidate s is most likely a misspelling of, as
// Typo judges one: at most two edits away, and fewer than half of s.
func Closest(s string, candidates []string) (string, bool) {
	return closest(s, candidates)
}

// closest returns the candidate at the smallest edit distance from s, if
// that is at most 2 and less than half of s's length (so that short names
// do not all look alike); the first such candidate on a tie.
func closest(s string, candidates []string) (string, bool) {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD && 2*d < len(s) {
			best, bestD = c, d
		}
	}
	return best, best != ""
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) between a and b, counting bytes: insertions, deletions,
// substitutions and swaps of two neighbours each cost 1.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
