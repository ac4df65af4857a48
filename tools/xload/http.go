package main

// respParser reads one HTTP/1.1 response (RFC 9112) a byte at a time, as
// the segments of a connection arrive, without buffering a line: the
// state is a handful of integers, kept in the connection's fixed slot.
// It reads the status code, Content-Length, Transfer-Encoding: chunked and
// Connection: close, and skips everything else. Whatever does not parse is
// reported as malformed, never trusted.
type respParser struct {
	state   uint8
	n       uint8  // position in the literal or header name being matched
	match   uint8  // header names still matching the name read so far
	flags   uint8  // pHaveLen, pChunked, pClose, pDigits
	status  uint16 // the status code
	hdrSize uint16 // bytes of status line and headers so far
	remain  uint64 // body or chunk bytes still to come
}

const (
	pHaveLen = 1 << iota
	pChunked
	pClose
	pDigits
)

// The outcomes of feed.
const (
	respMore      = iota // the response is not complete yet
	respDone             // a whole response was read
	respMalformed        // the bytes are not an HTTP/1.1 response
)

const maxHeaderBytes = 16 << 10

const (
	sVersion = iota
	sSP
	sCode
	sReason
	sLineStart
	sName
	sLenValue
	sTEValue
	sConnValue
	sSkipValue
	sHeadLF
	sBody
	sBodyEOF
	sChunkSize
	sChunkExt
	sChunkCR
	sChunkLF
	sTrailer
	sTrailerSkip
	sTrailerLF
	sDone
)

const (
	mLen = 1 << iota
	mTE
	mConn
)

var (
	httpPrefix = "HTTP/1."
	nameLen    = "content-length"
	nameTE     = "transfer-encoding"
	nameConn   = "connection"
	wordChunk  = "chunked"
	wordClose  = "close"
)

func (p *respParser) reset() { *p = respParser{} }

// closeOnly reports whether the body runs until the server closes.
func (p *respParser) closeOnly() bool { return p.state == sBodyEOF }

// keepAlive reports whether the server keeps the connection open.
func (p *respParser) keepAlive() bool { return p.flags&pClose == 0 }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// word advances the case-insensitive search for w in a header value.
func (p *respParser) word(c byte, w string, bit uint8) {
	if p.n >= uint8(len(w)) {
		return
	}
	if lower(c) == w[p.n] {
		p.n++
		if p.n == uint8(len(w)) {
			p.flags |= bit
		}
		return
	}
	p.n = 0
	if lower(c) == w[0] {
		p.n = 1
	}
}

// feed reads b and returns the outcome and how many bytes of b belong to
// this response.
func (p *respParser) feed(b []byte) (int, int) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if p.state < sBody {
			p.hdrSize++
			if p.hdrSize > maxHeaderBytes {
				return i, respMalformed
			}
		}
		switch p.state {
		case sVersion:
			if p.n < uint8(len(httpPrefix)) {
				if c != httpPrefix[p.n] {
					return i, respMalformed
				}
				p.n++
				continue
			}
			if c != '0' && c != '1' {
				return i, respMalformed
			}
			p.state = sSP
		case sSP:
			if c != ' ' {
				return i, respMalformed
			}
			p.state, p.n = sCode, 0
		case sCode:
			if p.n == 3 {
				if c != ' ' && c != '\r' && c != '\n' {
					return i, respMalformed
				}
				if c == '\n' {
					p.state = sLineStart
				} else {
					p.state = sReason
				}
				continue
			}
			if c < '0' || c > '9' {
				return i, respMalformed
			}
			p.status = p.status*10 + uint16(c-'0')
			p.n++
		case sReason:
			if c == '\n' {
				p.state = sLineStart
			}
		case sLineStart:
			switch c {
			case '\r':
				p.state = sHeadLF
			case '\n':
				if r := p.headersDone(); r != respMore {
					return i + 1, r
				}
			default:
				p.state, p.n, p.match = sName, 0, mLen|mTE|mConn
				if !p.name(c) {
					return i, respMalformed
				}
			}
		case sName:
			if c == ':' {
				p.state = sSkipValue
				switch {
				case p.match&mLen != 0 && p.n == uint8(len(nameLen)):
					if p.flags&pHaveLen != 0 {
						return i, respMalformed // RFC 9112 6.3: conflicting lengths are not to be guessed at
					}
					p.state, p.remain = sLenValue, 0
					p.flags = p.flags&^pDigits | pHaveLen
				case p.match&mTE != 0 && p.n == uint8(len(nameTE)):
					p.state = sTEValue
				case p.match&mConn != 0 && p.n == uint8(len(nameConn)):
					p.state = sConnValue
				}
				p.n = 0
				continue
			}
			if !p.name(c) {
				return i, respMalformed
			}
		case sLenValue:
			switch {
			case c >= '0' && c <= '9':
				if p.remain > 1<<40 {
					return i, respMalformed
				}
				p.remain = p.remain*10 + uint64(c-'0')
				p.flags |= pDigits
			case c == ' ' || c == '\t' || c == '\r':
			case c == '\n':
				if p.flags&pDigits == 0 {
					return i, respMalformed
				}
				p.state = sLineStart
			default:
				return i, respMalformed
			}
		case sTEValue, sConnValue:
			if c == '\n' {
				p.state = sLineStart
				continue
			}
			if p.state == sTEValue {
				p.word(c, wordChunk, pChunked)
			} else {
				p.word(c, wordClose, pClose)
			}
		case sSkipValue:
			if c == '\n' {
				p.state = sLineStart
			}
		case sHeadLF:
			if c != '\n' {
				return i, respMalformed
			}
			if r := p.headersDone(); r != respMore {
				return i + 1, r
			}
		case sBody:
			k := uint64(len(b) - i)
			if k > p.remain {
				k = p.remain
			}
			p.remain -= k
			i += int(k) - 1
			if p.remain == 0 {
				if p.flags&pChunked != 0 {
					p.state = sChunkCR
					continue
				}
				p.state = sDone
				return i + 1, respDone
			}
		case sBodyEOF:
			return len(b), respMore
		case sChunkSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if p.remain > 1<<40 {
					return i, respMalformed
				}
				p.remain = p.remain<<4 | uint64(unhex(c))
				p.flags |= pDigits
			case c == ';' || c == ' ' || c == '\t' || c == '\r':
				if p.flags&pDigits == 0 {
					return i, respMalformed
				}
				p.state = sChunkExt
			case c == '\n':
				if p.flags&pDigits == 0 {
					return i, respMalformed
				}
				p.chunkLine()
			default:
				return i, respMalformed
			}
		case sChunkExt:
			if c == '\n' {
				p.chunkLine()
			}
		case sChunkCR:
			switch c {
			case '\r':
				p.state = sChunkLF
			case '\n':
				p.state, p.remain, p.flags = sChunkSize, 0, p.flags&^pDigits
			default:
				return i, respMalformed
			}
		case sChunkLF:
			if c != '\n' {
				return i, respMalformed
			}
			p.state, p.remain, p.flags = sChunkSize, 0, p.flags&^pDigits
		case sTrailer:
			switch c {
			case '\r':
				p.state = sTrailerLF
			case '\n':
				p.state = sDone
				return i + 1, respDone
			default:
				p.state = sTrailerSkip
			}
		case sTrailerSkip:
			if c == '\n' {
				p.state = sTrailer
			}
		case sTrailerLF:
			if c != '\n' {
				return i, respMalformed
			}
			p.state = sDone
			return i + 1, respDone
		default: // sDone: bytes the client did not ask for
			return i, respMalformed
		}
	}
	return len(b), respMore
}

// name advances the header name match by one byte.
func (p *respParser) name(c byte) bool {
	if c <= ' ' || c == 0x7f {
		return false
	}
	c = lower(c)
	if p.match&mLen != 0 && (p.n >= uint8(len(nameLen)) || nameLen[p.n] != c) {
		p.match &^= mLen
	}
	if p.match&mTE != 0 && (p.n >= uint8(len(nameTE)) || nameTE[p.n] != c) {
		p.match &^= mTE
	}
	if p.match&mConn != 0 && (p.n >= uint8(len(nameConn)) || nameConn[p.n] != c) {
		p.match &^= mConn
	}
	if p.n < 255 {
		p.n++
	}
	return true
}

// headersDone picks how the body is delimited (RFC 9112 6.3).
func (p *respParser) headersDone() int {
	switch {
	case p.status >= 100 && p.status < 200:
		// An interim response: the real one follows.
		*p = respParser{hdrSize: p.hdrSize}
		return respMore
	case p.status == 204 || p.status == 304:
		p.state = sDone
		return respDone
	case p.flags&pChunked != 0:
		p.state, p.remain, p.flags = sChunkSize, 0, p.flags&^pDigits
	case p.flags&pHaveLen != 0:
		if p.remain == 0 {
			p.state = sDone
			return respDone
		}
		p.state = sBody
	default:
		p.state = sBodyEOF
	}
	return respMore
}

func (p *respParser) chunkLine() {
	if p.remain == 0 {
		p.state = sTrailer
		return
	}
	p.state = sBody
	p.flags |= pChunked
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
