package minion

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/overlordhq/overlord/rpc"
	"github.com/overlordhq/overlord/status"
)

// replyBudget keeps the job statuses of one Minion.Status or Minion.List
// reply within MaxStatusReply bytes of JSON and MaxStatusOutput bytes of
// output, whatever the jobs hold and however many are asked for.
type replyBudget struct {
	limit int // MaxStatusReply, but for tests
	json  int // bytes of JSON so far
	out   int // bytes of output so far
}

func newReplyBudget(limit int) *replyBudget {
	if limit <= 0 {
		limit = MaxStatusReply
	}
	return &replyBudget{limit: limit}
}

// maxCutMessage is what is left of an error message in an entry that
// did not fit.
const maxCutMessage = 1 << 10

// entry accounts for st, without its output. An entry that does not fit
// loses its result (and most of a long error message) and is marked
// Truncated; the first entry always keeps them.
func (b *replyBudget) entry(st *rpc.JobStatus) {
	if len(st.Result) > rpc.MaxResultBytes {
		// Recorded before results were bounded: more than any reply
		// may carry, even alone.
		st.Result, st.Truncated = nil, true
	}
	size := jsonSize(st)
	if b.json > 0 && b.json+size > b.limit {
		st.Result, st.Truncated = nil, true
		if st.Error != nil && len(st.Error.Message) > maxCutMessage {
			st.Error = &status.Error{Kind: st.Error.Kind, Message: truncateUTF8(st.Error.Message, maxCutMessage)}
		}
		size = jsonSize(st)
	}
	b.json += size
}

// chunk returns how many bytes of output the entry being added may read:
// at most limit, and what is left of the reply's budgets.
func (b *replyBudget) chunk(limit int) int {
	return max(0, min(limit, MaxStatusOutput-b.out, b.limit-b.json))
}

// output gives st the longest start of out whose JSON fits what is left,
// and returns its length in bytes.
func (b *replyBudget) output(st *rpc.JobStatus, out string) int {
	n, size := fitJSON(out, b.limit-b.json)
	st.Output = out[:n]
	b.json += size
	b.out += n
	return n
}

// jsonSize returns the length of st's JSON. Its result, JSON already,
// is counted, not encoded again: it may be hundreds of MiB.
func jsonSize(st *rpc.JobStatus) int {
	c := *st
	c.Result = nil
	data, err := json.Marshal(&c)
	if err != nil {
		return 0
	}
	if len(st.Result) > 0 {
		return len(data) + len(`,"result":`) + len(st.Result)
	}
	return len(data)
}

// fitJSON returns the length of the longest start of s, cut between
// characters, whose JSON string (as encoding/json writes it, HTML
// escaping included) is at most room bytes long, and that size less the
// quotes.
func fitJSON(s string, room int) (n, size int) {
	room -= 2 // the quotes
	for n < len(s) {
		r, w := utf8.DecodeRuneInString(s[n:])
		c := w
		switch {
		case r == utf8.RuneError && w == 1, r == '\u2028', r == '\u2029':
			c = 6 // \ufffd, \u2028, \u2029
		case r == '"', r == '\\', r == '\n', r == '\r', r == '\t', r == '\b', r == '\f':
			c = 2
		case r < 0x20, r == '<', r == '>', r == '&':
			c = 6 // \u00XX
		}
		if size+c > room {
			break
		}
		size += c
		n += w
	}
	return n, size
}

// truncateUTF8 cuts s to at most max bytes, between characters, and
// marks the cut.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
