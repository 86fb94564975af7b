package ingress

// POST /v1/batch: many pushes in one HTTP request. The body is
// newline-delimited JSON, one push per line:
//
//	{"id":"q7PmX2cT9bLk4VwZ0sRgYA","data":"hello"}
//	{"ids":["q7PmX2cT9bLk4VwZ0sRgYA","Xr4nB8vQ1mTz6KpL3wYdHe"],"data_base64":"AAEC"}
//	{"topic":"news","data":"headline"}
//	{"broadcast":true,"data":"to everyone"}
//
// Each line has exactly one target ("id", "ids", "topic" or "broadcast":
// true) and exactly one of "data" (text) or "data_base64" (bytes); blank
// lines are skipped. The whole body is parsed and checked before the first
// push: a malformed line fails the request, naming its line number, and
// nothing is pushed. The pushes then run in order, as separate requests
// on one connection would.
//
// The parser is written for this one shape rather than taken from
// encoding/json, which allocates per field: strings without escapes stay
// views of the body, and escaped strings and base64 payloads are decoded
// into one arena sized to the body, so a line costs no allocation once the
// parser's buffers have grown (BenchmarkBatchParse).

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// DefaultMaxBatch is the most pushes one POST /v1/batch may carry.
const DefaultMaxBatch = 10000

// Targets of a batch line.
const (
	targetNone uint8 = iota
	targetID
	targetIDs
	targetTopic
	targetBroadcast
)

// batchOp is one parsed line. Byte slices are views of the body or of the
// parser's arena, valid until the parser is reset.
type batchOp struct {
	line     int    // 1-based line number in the body
	target   uint8  // targetID...
	name     []byte // the ID or the topic
	ids      [2]int // targetIDs: the range of batchParser.ids
	payload  []byte
	hasData  bool
	hasBytes bool // data_base64
}

// batchParser parses a batch body. Not safe for concurrent use; pooled.
type batchParser struct {
	ops   []batchOp
	ids   []string // of every "ids" line, views (borrowed strings)
	arena []byte   // decoded strings and payloads; capacity len(body), never grown while parsing
	// limits
	maxLines, maxIDs int
}

var batchParsers = sync.Pool{New: func() any { return new(batchParser) }}

// batchLimitError is a line count or ID count over its limit (422).
type batchLimitError string

func (e batchLimitError) Error() string { return string(e) }

// batchError is a parse error on one line.
type batchError struct {
	line int
	err  error
}

func (e *batchError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *batchError) Unwrap() error { return e.err }

// reset prepares p for a body of n bytes. The arena takes a string's
// unescaped bytes (at most its escaped length) and, for data_base64, its
// decoded bytes too (three quarters of the unescaped ones): at most n +
// n*3/4 in all, so it never grows while parsing.
func (p *batchParser) reset(n int) {
	clear(p.ids) // drop views of the last body
	p.ops, p.ids = p.ops[:0], p.ids[:0]
	if n := n + n*3/4 + 4; cap(p.arena) < n {
		p.arena = make([]byte, 0, n)
	}
	p.arena = p.arena[:0]
}

// parse parses body into p.ops. On error nothing of body should be pushed.
func (p *batchParser) parse(body []byte) error {
	p.reset(len(body))
	line := 0
	for len(body) > 0 {
		line++
		end := 0
		for end < len(body) && body[end] != '\n' {
			end++
		}
		text := body[:end]
		if end < len(body) {
			body = body[end+1:]
		} else {
			body = nil
		}
		if isBlank(text) {
			continue
		}
		if len(p.ops) >= p.maxLines {
			return &batchError{line, batchLimitError(fmt.Sprintf("more than %d pushes; the most in one batch is %d", p.maxLines, p.maxLines))}
		}
		op, err := p.parseLine(text)
		if err != nil {
			return &batchError{line, err}
		}
		op.line = line
		p.ops = append(p.ops, op)
	}
	if len(p.ops) == 0 {
		return errors.New(`the body has no pushes; want one JSON object a line, such as {"id":"...","data":"..."}`)
	}
	return nil
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// lexer reads one line's JSON.
type lexer struct {
	b []byte
	i int
}

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\r':
			l.i++
		default:
			return
		}
	}
}

// expect skips blanks and consumes c.
func (l *lexer) expect(c byte, what string) error {
	l.ws()
	if l.i >= len(l.b) {
		return fmt.Errorf("the line ends where %s should be", what)
	}
	if l.b[l.i] != c {
		return fmt.Errorf("%s expected at column %d, found %q", what, l.i+1, l.b[l.i])
	}
	l.i++
	return nil
}

// peek skips blanks and returns the next byte, or 0 at the end.
func (l *lexer) peek() byte {
	l.ws()
	if l.i >= len(l.b) {
		return 0
	}
	return l.b[l.i]
}

const batchShape = `{"id":"...","data":"..."}`

// parseLine parses one object.
func (p *batchParser) parseLine(text []byte) (batchOp, error) {
	var op batchOp
	l := lexer{b: text}
	if err := l.expect('{', "'{'"); err != nil {
		return op, fmt.Errorf("%v: want one JSON object, such as %s", err, batchShape)
	}
	var seen uint8 // one bit per field
	if l.peek() == '}' {
		l.i++
	} else {
		for {
			key, err := p.str(&l, false)
			if err != nil {
				return op, fmt.Errorf("a field name: %v", err)
			}
			if err := l.expect(':', "':'"); err != nil {
				return op, err
			}
			var bit uint8
			switch string(key) { // no allocation: compared, not kept
			case "id", "topic":
				bit = 1
				if key[0] == 't' {
					bit = 2
				}
				if op.target != targetNone {
					return op, errTargets
				}
				v, err := p.str(&l, true)
				if err != nil {
					return op, fmt.Errorf("%q: %v", key, err)
				}
				op.name = v
				op.target = targetID
				if bit == 2 {
					op.target = targetTopic
				}
			case "ids":
				bit = 4
				if op.target != targetNone {
					return op, errTargets
				}
				if err := p.idList(&l, &op); err != nil {
					return op, fmt.Errorf(`"ids": %w`, err)
				}
				op.target = targetIDs
			case "broadcast":
				bit = 8
				if op.target != targetNone {
					return op, errTargets
				}
				l.ws()
				if !hasWord(l.b[l.i:], "true") {
					return op, errors.New(`"broadcast" must be true`)
				}
				l.i += 4
				op.target = targetBroadcast
			case "data", "data_base64":
				bit = 16
				if len(key) > 4 {
					bit = 32
				}
				if op.hasData {
					return op, errors.New(`the line has both "data" and "data_base64", or one twice; send one`)
				}
				v, err := p.str(&l, true)
				if err != nil {
					return op, fmt.Errorf("%q: %v", key, err)
				}
				if bit == 32 {
					v, err = p.base64(v)
					if err != nil {
						return op, fmt.Errorf(`"data_base64" is not standard base64: %v`, err)
					}
					op.hasBytes = true
				}
				op.payload = v
				op.hasData = true
			default:
				return op, fmt.Errorf("unknown field %s; a line has one of \"id\", \"ids\", \"topic\", \"broadcast\" and one of \"data\", \"data_base64\"", strconv.Quote(string(key)))
			}
			if seen&bit != 0 {
				return op, fmt.Errorf("field %q twice", key)
			}
			seen |= bit
			c := l.peek()
			l.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return op, fmt.Errorf("',' or '}' expected at column %d", l.i)
			}
		}
	}
	if l.peek() != 0 {
		return op, fmt.Errorf("data after the object at column %d; one object a line", l.i+1)
	}
	switch {
	case op.target == targetNone:
		return op, errors.New(`no target: want one of "id", "ids", "topic" or "broadcast": true`)
	case !op.hasData:
		return op, errors.New(`neither "data" (text) nor "data_base64" (bytes)`)
	}
	return op, nil
}

var errTargets = errors.New(`more than one target: a line has one of "id", "ids", "topic" or "broadcast"`)

func hasWord(b []byte, w string) bool { return len(b) >= len(w) && string(b[:len(w)]) == w }

// idList parses a JSON array of strings into p.ids.
func (p *batchParser) idList(l *lexer, op *batchOp) error {
	if err := l.expect('[', "'['"); err != nil {
		return err
	}
	op.ids[0] = len(p.ids)
	if l.peek() == ']' {
		l.i++
	} else {
		for {
			v, err := p.str(l, true)
			if err != nil {
				return err
			}
			if len(p.ids)-op.ids[0] >= p.maxIDs {
				return batchLimitError(fmt.Sprintf("more than %d IDs; the most in one push is %d", p.maxIDs, p.maxIDs))
			}
			p.ids = append(p.ids, borrow(v))
			c := l.peek()
			l.i++
			if c == ']' {
				break
			}
			if c != ',' {
				return fmt.Errorf("',' or ']' expected at column %d", l.i)
			}
		}
	}
	op.ids[1] = len(p.ids)
	return nil
}

// str reads a JSON string. Without escapes it returns a view of the line;
// with escapes, the decoded bytes in the arena. value says whether a
// non-string is reported as a value or as a field name.
func (p *batchParser) str(l *lexer, value bool) ([]byte, error) {
	l.ws()
	if l.i >= len(l.b) || l.b[l.i] != '"' {
		if l.i >= len(l.b) {
			return nil, errors.New("the line ends where a string should be")
		}
		return nil, fmt.Errorf("a string expected at column %d, found %q", l.i+1, l.b[l.i])
	}
	l.i++
	start := l.i
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			v := l.b[start:l.i:l.i]
			l.i++
			return v, nil
		case c == '\\':
			return p.escaped(l, start)
		case c < 0x20:
			return nil, fmt.Errorf("control byte 0x%02x in a string at column %d (escape it)", c, l.i+1)
		}
		l.i++
	}
	return nil, errors.New("a string is not closed")
}

// escaped decodes the rest of a string that holds escapes into the arena.
func (p *batchParser) escaped(l *lexer, start int) ([]byte, error) {
	a := len(p.arena)
	p.arena = append(p.arena, l.b[start:l.i]...)
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			l.i++
			return p.arena[a:len(p.arena):len(p.arena)], nil
		case c < 0x20:
			return nil, fmt.Errorf("control byte 0x%02x in a string at column %d (escape it)", c, l.i+1)
		case c != '\\':
			p.arena = append(p.arena, c)
			l.i++
			continue
		}
		if l.i+1 >= len(l.b) {
			break
		}
		e := l.b[l.i+1]
		l.i += 2
		switch e {
		case '"', '\\', '/':
			p.arena = append(p.arena, e)
		case 'b':
			p.arena = append(p.arena, '\b')
		case 'f':
			p.arena = append(p.arena, '\f')
		case 'n':
			p.arena = append(p.arena, '\n')
		case 'r':
			p.arena = append(p.arena, '\r')
		case 't':
			p.arena = append(p.arena, '\t')
		case 'u':
			r, ok := hex4(l.b[l.i:])
			if !ok {
				return nil, fmt.Errorf(`\u at column %d is not followed by 4 hex digits`, l.i-1)
			}
			l.i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if len(l.b)-l.i >= 6 && l.b[l.i] == '\\' && l.b[l.i+1] == 'u' {
					r2, ok = hex4(l.b[l.i+2:])
				}
				if d := utf16.DecodeRune(r, r2); ok && d != utf8.RuneError {
					r = d
					l.i += 6
				} else {
					r = utf8.RuneError
				}
			}
			// 6 source bytes (or 12 for a pair) become at most 4: the
			// arena stays within its capacity.
			p.arena = utf8.AppendRune(p.arena, r)
		default:
			return nil, fmt.Errorf("unknown escape \\%c at column %d", e, l.i-1)
		}
	}
	return nil, errors.New("a string is not closed")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// base64 decodes standard base64, padded or not, into the arena (within
// the capacity reset gave it, even when v itself is in the arena because
// it held escapes).
func (p *batchParser) base64(v []byte) ([]byte, error) {
	enc := base64.RawStdEncoding
	if len(v) > 0 && v[len(v)-1] == '=' {
		enc = base64.StdEncoding
	}
	a := len(p.arena)
	out := p.arena[a : a+enc.DecodedLen(len(v))]
	n, err := enc.Decode(out, v)
	if err != nil {
		return nil, err
	}
	p.arena = p.arena[:a+n]
	return p.arena[a : a+n : a+n], nil
}

// check validates every parsed op against the relay's rules, so that a
// bad line fails the batch before anything is pushed. It returns the
// failure of the first bad line.
func (p *batchParser) check(r Relay) outcome {
	for i := range p.ops {
		op := &p.ops[i]
		switch op.target {
		case targetID:
			if !relay.ValidID(borrow(op.name)) {
				return badID(batchLine(op.line), op.name)
			}
		case targetIDs:
			for j, id := range p.ids[op.ids[0]:op.ids[1]] {
				if !relay.ValidID(id) {
					return badIDAt(batchLine(op.line), j, id)
				}
			}
		case targetTopic:
			if o := checkTopic("", op.name); o.failed() {
				return checkTopic(batchLine(op.line)+": topic", op.name) // words TestHTTPBatch pins
			}
		}
		if err := r.CheckPayload(op.payload); err != nil {
			st := wire.StatusBadRequest
			if errors.Is(err, relay.ErrTooLarge) {
				st = wire.StatusTooLarge
			}
			return failure(st, fmt.Sprintf("%s: %v", batchLine(op.line), err))
		}
	}
	return outcome{}
}

// batchLine names a line of a batch in its errors.
func batchLine(line int) string { return fmt.Sprintf("batch: line %d", line) }

// batchScratch holds a request's per-line counts; pooled with the parser.
type batchScratch struct {
	counts []relay.Counts
	out    []byte
}

var batchScratches = sync.Pool{New: func() any { return new(batchScratch) }}

// POST /v1/batch.
func (s *HTTPServer) batch(ctx *fasthttp.RequestCtx) {
	body := ctx.PostBody()
	p := batchParsers.Get().(*batchParser)
	defer batchParsers.Put(p)
	p.maxLines, p.maxIDs = s.cfg.MaxBatch, s.cfg.MaxIDs
	if err := p.parse(body); err != nil {
		kind := errBadRequest
		if le := batchLimitError(""); errors.As(err, &le) {
			kind = errLimit
		}
		s.fail(ctx, kind, "batch: "+err.Error())
		return
	}
	if s.failed(ctx, p.check(s.relay)) {
		return
	}
	sc := batchScratches.Get().(*batchScratch)
	defer batchScratches.Put(sc)
	sc.counts = sc.counts[:0]
	var total relay.Counts
	for i := range p.ops {
		op := &p.ops[i]
		var c relay.Counts
		var st relay.Status
		switch op.target {
		case targetID:
			// One recipient: its status is its count, overloaded and
			// unreachable included, as in a send_many. With more pushes
			// behind it, it goes through the loop's mailbox, which
			// writes the lot in batches (as the Unix ingress does for
			// pipelined requests), not with one system call a push.
			if i+1 < len(p.ops) {
				st = s.relay.SendPipelined(borrow(op.name), op.payload)
			} else {
				st = s.relay.Send(borrow(op.name), op.payload)
			}
			c.Add(st)
		case targetIDs:
			c, st = s.relay.SendMany(p.ids[op.ids[0]:op.ids[1]], op.payload)
		case targetTopic:
			c, st = s.relay.Publish(borrow(op.name), op.payload)
		case targetBroadcast:
			c, st = s.relay.Broadcast(op.payload)
		}
		switch st {
		case relay.Queued, relay.UnknownID, relay.DroppedSlow, relay.Overloaded, relay.Unreachable, relay.Unsupported:
			// In the counts. A publish or broadcast refused as overloaded
			// counts its recipients as overloaded; one a node did not
			// answer counts that node as unreachable.
			if st == relay.Unreachable && op.target >= targetTopic && c.Unreachable == 0 {
				c.Unreachable = 1
			}
		default:
			// Refused as a whole (shutting down, or a check the relay made
			// otherwise than ours): stop, and say how far the batch got.
			ws, reason, refused := refusal(s.relay, st, op.payload)
			if !refused {
				ws, reason = wire.StatusBadRequest, st.String()
			}
			s.failWith(ctx, fromWire(ws), fmt.Sprintf("%s: %s; the %d pushes before it were made, the rest were not", batchLine(op.line), reason, i), func(b []byte) []byte {
				return strconv.AppendInt(append(b, `"done":`...), int64(i), 10)
			})
			return
		}
		sc.counts = append(sc.counts, c)
		total.Merge(c)
	}
	b := append(sc.out[:0], `{"results":[`...)
	for i, c := range sc.counts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCountsJSON(b, c)
	}
	b = append(b, `],"totals":`...)
	b = appendCountsJSON(b, total)
	b = append(b, "}\n"...)
	sc.out = b
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentJSON)
	ctx.Response.SetBody(b) // copies: sc.out goes back to the pool
}
