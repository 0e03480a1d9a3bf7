// Package synth generates realistic synthetic mail-server telemetry: a
// deterministic stream of Stalwart and Dovecot events for demos, tests and
// load generation.
//
// Traffic is modelled as sessions, not as independent events. A fixed number
// of sessions run concurrently; each call to [Generator.Next] advances one of
// them, picked at random, by one event, and a finished session is replaced by
// a new one drawn from the mix (see [Generator.Mix]). A Stalwart session
// carries the same spanId on all its events and its connection-end reports the
// simulated time the session took. Every message accepted by an SMTP session
// is queued (queue.queue-message, queue.queue-message-submission) and later
// delivered by a delivery session with the same queueId: locally
// (message-ingest.ham or .spam per recipient) or to a remote MX (delivery.*,
// occasionally delivery.dsn-temp-fail or delivery.dsn-perm-fail).
//
// Every event type the generator emits, nested causedBy events included, is
// in the catalog; Stalwart events carry Server "stalwart" and Stalwart keys
// (accountName, accountId, spanId, listenerId, localPort, remoteIp,
// remotePort, elapsed, size, from, to, queueId, ...), Dovecot events carry
// Server "dovecot", the canonical id of the Dovecot event and Dovecot's field
// names (user, remote_ip, remote_port, duration, bytes_in, bytes_out,
// tagged_reply_state, ...). Addresses are at example.com, example.org
// (local) and example.net (remote); IP addresses come from the documentation
// ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
package synth

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/mailtel/mailtel/catalog"
	"github.com/mailtel/mailtel/schema"
)

// Server kinds written to Event.Server.
const (
	ServerStalwart = "stalwart"
	ServerDovecot  = "dovecot"
)

// Options configure a Generator. The zero value is usable.
type Options struct {
	// Seed selects the stream: generators with the same Options produce the
	// same events, generators with different seeds produce different events
	// with disjoint ids.
	Seed uint64
	// Hosts are the Stalwart hosts (default mx1.example.com,
	// mx2.example.com, imap1.example.com). Each session runs on one of them.
	Hosts []string
	// DovecotHosts are the Dovecot hosts (default dovecot1.example.com,
	// dovecot2.example.com).
	DovecotHosts []string
	// Start is the time of the first event (default: time.Now() at New).
	// Event times are in UTC.
	Start time.Time
	// Rate is the mean number of events per second of simulated time
	// (default 1000): each event is 1/Rate seconds after the previous one,
	// with ±50% jitter. It shapes timestamps only, not how fast Next runs.
	Rate float64
}

// The hosts used when Options.Hosts or Options.DovecotHosts is empty. New
// copies them.
var (
	DefaultHosts        = []string{"mx1.example.com", "mx2.example.com", "imap1.example.com"}
	DefaultDovecotHosts = []string{"dovecot1.example.com", "dovecot2.example.com"}
)

// DefaultRate is the Rate used when Options.Rate is not positive.
const DefaultRate = 1000

// concurrency is the number of sessions in flight at any time.
const concurrency = 64

// Generator produces synthetic events. It is not safe for concurrent use;
// use one Generator per goroutine (with different seeds for different
// streams).
type Generator struct {
	rng      *rand.Rand
	hosts    []string
	dhosts   []string
	start    time.Time
	interval float64 // mean simulated ns between events
	now      int64   // simulated ns since start of the next event
	seq      uint64
	id       []byte // "syn-<seed hex>-" followed by the sequence number
	prefix   int
	queueSeq uint64
	banned   schema.Value // last banned address, reused by blocked sessions
	slots    [concurrency]session
	// pending holds queued messages awaiting their delivery session.
	pending [concurrency * 4]message
	phead   int
	plen    int
}

// New returns a generator for opts, filling in the defaults.
func New(opts Options) *Generator {
	if len(opts.Hosts) == 0 {
		opts.Hosts = DefaultHosts
	}
	if len(opts.DovecotHosts) == 0 {
		opts.DovecotHosts = DefaultDovecotHosts
	}
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	if !(opts.Rate > 0) {
		opts.Rate = DefaultRate
	}
	g := &Generator{
		rng:      rand.New(rand.NewPCG(opts.Seed, 0x6d61696c74656c)),
		hosts:    append([]string(nil), opts.Hosts...),
		dhosts:   append([]string(nil), opts.DovecotHosts...),
		start:    opts.Start.UTC(),
		interval: 1e9 / opts.Rate,
	}
	g.id = strconv.AppendUint(append(make([]byte, 0, 48), "syn-"...), opts.Seed, 16)
	g.id = append(g.id, '-')
	g.prefix = len(g.id)
	g.queueSeq = g.rng.Uint64() >> 20
	return g
}

// Next overwrites ev with the next event of the stream. It reuses the
// backing array of ev.Fields, so an event kept across calls must be passed
// as a fresh Event (or have its Fields copied) before the next call; the
// Values themselves are never modified afterwards.
//
// ID is "syn-<seed in hex>-<sequence number from 0>", unique per (seed, n).
// The first event is at Options.Start and Time never decreases. Level is
// the catalog default of the type; a publisher applying tracing.level
// overrides replaces it. Next allocates the id and, once per session, a
// few strings; nothing per field.
func (g *Generator) Next(ev *schema.Event) {
	ev.Reset()
	s := &g.slots[g.rng.IntN(concurrency)]
	if s.pos >= s.n {
		g.begin(s)
	}
	st := s.plan[s.pos]
	s.pos++

	g.id = strconv.AppendUint(g.id[:g.prefix], g.seq, 10)
	g.seq++
	ev.ID = string(g.id)
	ev.Type = opTypes[st.op]
	ev.Time = g.start.Add(time.Duration(g.now))
	ev.Level = opLevels[st.op]
	ev.Host = s.host
	ev.Server = s.server
	g.emit(s, st, ev)
	g.now += int64(g.interval * (0.5 + g.rng.Float64()))
}

// Weighted is one kind of session in the mix.
type Weighted struct {
	// Name of the session kind ("smtp-inbound").
	Name string
	// Server is ServerStalwart or ServerDovecot.
	Server string
	// Weight is the share of new client sessions of this kind; the weights
	// of the mix sum to 1. Delivery sessions are not in the mix: one follows
	// every queued message.
	Weight float64
	// Events describes what the session emits.
	Events string
}

// Mix returns the session mix the generator draws new sessions from. The
// slice is a copy; every generator uses the same mix.
func (g *Generator) Mix() []Weighted {
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	out := make([]Weighted, len(kinds))
	for i, k := range kinds {
		out[i] = Weighted{Name: k.name, Server: k.server, Weight: float64(k.weight) / float64(total), Events: k.events}
	}
	return out
}

// kind is a kind of session.
type kind uint8

const (
	kInbound kind = iota
	kSubmission
	kIMAP
	kPOP3
	kJMAP
	kAttack
	kBlocked
	kDvIMAP
	kDvLMTP
	kDvConn
	kDvHTTP
	numKinds
)

var kinds = [numKinds]struct {
	name, server string
	weight       int
	events       string
}{
	kInbound: {"smtp-inbound", ServerStalwart, 220,
		"inbound MX session (connection, STARTTLS, EHLO, iprev/SPF/DKIM/ARC/DMARC, MAIL FROM, RCPT TO, spam classification, queue.queue-message), then a local delivery session (delivery.attempt-start, message-ingest.ham/spam per recipient); ~12% from dubious senders that fail checks or are spam, a few % rejected recipients or rate limits"},
	kSubmission: {"smtp-submission", ServerStalwart, 80,
		"authenticated submission on port 587 (auth.success, ~3% auth.failed) queueing mail for example.net, then a remote delivery session (MX and IP lookup, connect, STARTTLS, delivery.delivered; ~3% delivery.dsn-temp-fail with queue.rescheduled, ~3% of recipients delivery.dsn-perm-fail with queue.queue-dsn)"},
	kIMAP: {"imap", ServerStalwart, 220,
		"IMAP over TLS on port 993: auth.success (~4% auth.failed, a few auth.banned), LIST, SELECT, FETCH and a random run of SEARCH, STORE, IDLE, STATUS, MOVE, COPY, EXPUNGE, APPEND (with message-ingest.imap-append), LOGOUT"},
	kPOP3: {"pop3", ServerStalwart, 20,
		"POP3 over TLS on port 995: auth, STAT, UIDL, RETR, DELE, QUIT"},
	kJMAP: {"jmap", ServerStalwart, 50,
		"JMAP over HTTPS: http.request-url, auth, jmap.method-call runs, occasional WebSocket, state mismatch or Email/import (message-ingest.jmap-append)"},
	kAttack: {"auth-attack", ServerStalwart, 30,
		"password guessing on submission or IMAP: 3-8 auth.failed, then often auth.banned or auth.too-many-attempts"},
	kBlocked: {"blocked", ServerStalwart, 12,
		"a connection from a banned address dropped at once (network.drop-blocked)"},
	kDvIMAP: {"dovecot-imap", ServerDovecot, 150,
		"Dovecot IMAP login (auth.client-request-started, auth.passdb-request-finished, auth.request-finished, ~4% failing) and imap.command-finished per command"},
	kDvLMTP: {"dovecot-lmtp", ServerDovecot, 60,
		"Dovecot LMTP delivery: mail.delivery-started and mail.delivery-finished per recipient"},
	kDvConn: {"dovecot-connection", ServerDovecot, 25,
		"Dovecot internal connections: client.connection-connected/-disconnected or server.connection-connected/-disconnected"},
	kDvHTTP: {"dovecot-http", ServerDovecot, 10,
		"Dovecot HTTP client request (push notification, OAuth2): http.request-finished, sometimes after http.request-retried"},
}

// kindCum holds the cumulative weights of kinds.
var kindCum = func() (c [numKinds]int) {
	sum := 0
	for i, k := range kinds {
		sum += k.weight
		c[i] = sum
	}
	return c
}()

// op is one kind of emitted event.
type op uint8

const (
	opConnStart op = iota
	opConnEnd
	opDropBlocked
	opTLSHandshake
	opSMTPStartTLS
	opEhlo
	opIprevPass
	opIprevFail
	opSpfEhloPass
	opSpfEhloFail
	opMailFrom
	opSpfFromPass
	opSpfFromFail
	opRcptTo
	opMailboxMissing
	opRelayDenied
	opMsgTooLarge
	opRateLimited
	opDkimPass
	opDkimFail
	opArcPass
	opDmarcPass
	opDmarcFail
	opSpamClassify
	opQueueMessage
	opQueueSubmission
	opQuit
	opAuthSuccess
	opAuthFailed
	opAuthBanned
	opAuthTooMany
	opDelStart
	opDelDomain
	opDelMX
	opDelIP
	opDelConnect
	opDelConnectErr
	opDelStartTLS
	opDelMailFrom
	opDelRcptTo
	opDelRcptRejected
	opDelivered
	opDsnTemp
	opDsnPerm
	opQueueDSN
	opRescheduled
	opDelEnd
	opDelCompleted
	opIngestHam
	opIngestSpam
	opIngestDup
	opIngestError
	opImapCapabilities
	opImapID
	opImapList
	opImapStatus
	opImapSelect
	opImapFetch
	opImapSearch
	opImapStore
	opImapExpunge
	opImapMove
	opImapCopy
	opImapAppend
	opIngestImapAppend
	opImapIdleStart
	opImapIdleStop
	opImapNoop
	opImapLogout
	opImapError
	opPopStat
	opPopUidl
	opPopFetch
	opPopDelete
	opPopQuit
	opHTTPURL
	opJmapCall
	opJmapStateMismatch
	opJmapWSStart
	opJmapWSStop
	opIngestJmapAppend
	opDvAuthClientStarted
	opDvPassdbFinished
	opDvAuthFinished
	opDvAuthClientFinished
	opDvUserdbLookupFinished
	opDvImapCommand
	opDvDeliveryStarted
	opDvDeliveryFinished
	opDvClientConnected
	opDvClientDisconnected
	opDvServerConnected
	opDvServerDisconnected
	opDvHTTPRetried
	opDvHTTPFinished
	// Types that appear only as nested causedBy events.
	opNestSpfFail
	opNestSpfSoftFail
	opNestDkimFail
	opNestDmarcFail
	opNestIprevFail
	opNestGreetingFailed
	opNestRcptRejected
	numOps
)

// opTypes maps every op to its catalog id.
var opTypes = [numOps]string{
	opConnStart:              "network.connection-start",
	opConnEnd:                "network.connection-end",
	opDropBlocked:            "network.drop-blocked",
	opTLSHandshake:           "tls.handshake",
	opSMTPStartTLS:           "smtp.start-tls",
	opEhlo:                   "smtp.ehlo",
	opIprevPass:              "smtp.iprev-pass",
	opIprevFail:              "smtp.iprev-fail",
	opSpfEhloPass:            "smtp.spf-ehlo-pass",
	opSpfEhloFail:            "smtp.spf-ehlo-fail",
	opMailFrom:               "smtp.mail-from",
	opSpfFromPass:            "smtp.spf-from-pass",
	opSpfFromFail:            "smtp.spf-from-fail",
	opRcptTo:                 "smtp.rcpt-to",
	opMailboxMissing:         "smtp.mailbox-does-not-exist",
	opRelayDenied:            "smtp.relay-not-allowed",
	opMsgTooLarge:            "smtp.message-too-large",
	opRateLimited:            "smtp.rate-limit-exceeded",
	opDkimPass:               "smtp.dkim-pass",
	opDkimFail:               "smtp.dkim-fail",
	opArcPass:                "smtp.arc-pass",
	opDmarcPass:              "smtp.dmarc-pass",
	opDmarcFail:              "smtp.dmarc-fail",
	opSpamClassify:           "spam.classify",
	opQueueMessage:           "queue.queue-message",
	opQueueSubmission:        "queue.queue-message-submission",
	opQuit:                   "smtp.quit",
	opAuthSuccess:            "auth.success",
	opAuthFailed:             "auth.failed",
	opAuthBanned:             "auth.banned",
	opAuthTooMany:            "auth.too-many-attempts",
	opDelStart:               "delivery.attempt-start",
	opDelDomain:              "delivery.domain-delivery-start",
	opDelMX:                  "delivery.mx-lookup",
	opDelIP:                  "delivery.ip-lookup",
	opDelConnect:             "delivery.connect",
	opDelConnectErr:          "delivery.connect-error",
	opDelStartTLS:            "delivery.start-tls",
	opDelMailFrom:            "delivery.mail-from",
	opDelRcptTo:              "delivery.rcpt-to",
	opDelRcptRejected:        "delivery.rcpt-to-rejected",
	opDelivered:              "delivery.delivered",
	opDsnTemp:                "delivery.dsn-temp-fail",
	opDsnPerm:                "delivery.dsn-perm-fail",
	opQueueDSN:               "queue.queue-dsn",
	opRescheduled:            "queue.rescheduled",
	opDelEnd:                 "delivery.attempt-end",
	opDelCompleted:           "delivery.completed",
	opIngestHam:              "message-ingest.ham",
	opIngestSpam:             "message-ingest.spam",
	opIngestDup:              "message-ingest.duplicate",
	opIngestError:            "message-ingest.error",
	opImapCapabilities:       "imap.capabilities",
	opImapID:                 "imap.id",
	opImapList:               "imap.list",
	opImapStatus:             "imap.status",
	opImapSelect:             "imap.select",
	opImapFetch:              "imap.fetch",
	opImapSearch:             "imap.search",
	opImapStore:              "imap.store",
	opImapExpunge:            "imap.expunge",
	opImapMove:               "imap.move",
	opImapCopy:               "imap.copy",
	opImapAppend:             "imap.append",
	opIngestImapAppend:       "message-ingest.imap-append",
	opImapIdleStart:          "imap.idle-start",
	opImapIdleStop:           "imap.idle-stop",
	opImapNoop:               "imap.noop",
	opImapLogout:             "imap.logout",
	opImapError:              "imap.error",
	opPopStat:                "pop3.stat",
	opPopUidl:                "pop3.uidl",
	opPopFetch:               "pop3.fetch",
	opPopDelete:              "pop3.delete",
	opPopQuit:                "pop3.quit",
	opHTTPURL:                "http.request-url",
	opJmapCall:               "jmap.method-call",
	opJmapStateMismatch:      "jmap.state-mismatch",
	opJmapWSStart:            "jmap.websocket-start",
	opJmapWSStop:             "jmap.websocket-stop",
	opIngestJmapAppend:       "message-ingest.jmap-append",
	opDvAuthClientStarted:    "auth.client-request-started",
	opDvPassdbFinished:       "auth.passdb-request-finished",
	opDvAuthFinished:         "auth.request-finished",
	opDvAuthClientFinished:   "auth.client-request-finished",
	opDvUserdbLookupFinished: "auth.client-userdb-lookup-finished",
	opDvImapCommand:          "imap.command-finished",
	opDvDeliveryStarted:      "mail.delivery-started",
	opDvDeliveryFinished:     "mail.delivery-finished",
	opDvClientConnected:      "client.connection-connected",
	opDvClientDisconnected:   "client.connection-disconnected",
	opDvServerConnected:      "server.connection-connected",
	opDvServerDisconnected:   "server.connection-disconnected",
	opDvHTTPRetried:          "http.request-retried",
	opDvHTTPFinished:         "http.request-finished",
	opNestSpfFail:            "spf.fail",
	opNestSpfSoftFail:        "spf.soft-fail",
	opNestDkimFail:           "dkim.fail",
	opNestDmarcFail:          "dmarc.fail",
	opNestIprevFail:          "iprev.fail",
	opNestGreetingFailed:     "delivery.greeting-failed",
	opNestRcptRejected:       "delivery.rcpt-to-rejected",
}

// opLevels holds the catalog default level of every op's type.
var opLevels = func() (l [numOps]catalog.Level) {
	for i, id := range opTypes {
		if t, ok := catalog.Lookup(id); ok {
			l[i] = t.Level
		}
	}
	return l
}()

// step is one planned event of a session; arg selects a recipient, a
// mailbox, a command or a login depending on the op.
type step struct {
	op  op
	arg uint8
}

const (
	maxSteps = 48
	maxRcpt  = 4
)

// message is a message accepted by an SMTP session and awaiting delivery.
type message struct {
	host    string
	queueID uint64
	from    string
	rcpt    [maxRcpt]uint8 // indexes into accounts (local) or remotes
	n       int
	local   bool
	spam    bool
	size    uint64
	msgID   string
	to      schema.Value // list of the recipient addresses
}

func (m *message) rcptAddr(i uint8) string {
	if m.local {
		return accounts[m.rcpt[i]].name
	}
	return remotes[m.rcpt[i]]
}

// session is one session in flight: its plan and its state.
type session struct {
	plan     [maxSteps]step
	n, pos   int
	server   string
	host     string
	span     uint64
	start    int64
	listener string
	port     uint64 // local port
	ip       schema.Value
	rport    uint64
	acct     int
	fail     bool
	helo     string
	dvID     uint64
	dvSess   string
	msg      message
}

func (s *session) push(o op, arg int) {
	if s.n < maxSteps {
		s.plan[s.n] = step{o, uint8(arg)}
		s.n++
	}
}

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

// begin starts a new session in s: a delivery of a pending message if there
// is one, else a session drawn from the mix.
func (g *Generator) begin(s *session) {
	*s = session{plan: s.plan, span: g.rng.Uint64(), start: g.now, server: ServerStalwart}
	if g.plen > 0 {
		s.msg = g.pending[g.phead]
		g.pending[g.phead] = message{}
		g.phead = (g.phead + 1) % len(g.pending)
		g.plen--
		s.host = s.msg.host
		if s.msg.local {
			g.planLocalDelivery(s)
		} else {
			g.planRemoteDelivery(s)
		}
		return
	}
	r := g.rng.IntN(kindCum[numKinds-1])
	k := kind(0)
	for r >= kindCum[k] {
		k++
	}
	if kinds[k].server == ServerDovecot {
		s.server = ServerDovecot
		s.host = g.dhosts[g.rng.IntN(len(g.dhosts))]
	} else {
		s.host = g.hosts[g.rng.IntN(len(g.hosts))]
	}
	s.ip, s.rport = g.remoteIP(), 32768+g.rng.Uint64N(28232)
	s.acct = g.rng.IntN(len(accounts))
	switch k {
	case kInbound:
		g.planInbound(s)
	case kSubmission:
		g.planSubmission(s)
	case kIMAP:
		g.planIMAP(s)
	case kPOP3:
		g.planPOP3(s)
	case kJMAP:
		g.planJMAP(s)
	case kAttack:
		g.planAttack(s)
	case kBlocked:
		if g.banned.Kind() == schema.KindIP {
			s.ip = g.banned
		}
		s.listener, s.port = "smtp", 25
		s.push(opDropBlocked, 0)
	case kDvIMAP:
		g.planDvIMAP(s)
	case kDvLMTP:
		g.planDvLMTP(s)
	case kDvConn:
		if g.chance(0.7) {
			s.push(opDvClientConnected, 0)
			s.push(opDvClientDisconnected, g.rng.IntN(len(dvReasons)))
		} else {
			s.push(opDvServerConnected, 0)
			s.push(opDvServerDisconnected, g.rng.IntN(len(dvReasons)))
		}
	case kDvHTTP:
		if g.chance(0.1) {
			s.push(opDvHTTPRetried, 0)
		}
		s.push(opDvHTTPFinished, 0)
	}
}

// enqueue hands a message to a future delivery session.
func (g *Generator) enqueue(m *message) {
	list := make([]schema.Value, m.n)
	for i := range list {
		list[i] = schema.String(m.rcptAddr(uint8(i)))
	}
	m.to = schema.List(list...)
	if g.plen == len(g.pending) {
		return // does not happen: new sessions take pending deliveries first
	}
	g.pending[(g.phead+g.plen)%len(g.pending)] = *m
	g.plen++
}

func (g *Generator) newMessage(s *session, local bool) {
	g.queueSeq++
	s.msg = message{host: s.host, queueID: g.queueSeq, local: local, msgID: g.messageID()}
	if g.chance(0.02) {
		s.msg.size = 1<<20 + g.rng.Uint64N(20<<20)
	} else {
		s.msg.size = 1500 + uint64(g.rng.ExpFloat64()*30000)
	}
}

func (g *Generator) rcptCount() int {
	switch r := g.rng.Float64(); {
	case r < 0.8:
		return 1
	case r < 0.95:
		return 2
	default:
		return 3
	}
}

func (g *Generator) planInbound(s *session) {
	s.listener, s.port = "smtp", 25
	s.push(opConnStart, 0)
	if g.chance(0.85) {
		s.push(opSMTPStartTLS, 0)
		s.push(opTLSHandshake, 0)
	}
	dubious := g.chance(0.12)
	s.helo = g.helo(dubious)
	s.push(opEhlo, 0)
	if dubious && g.chance(0.6) {
		s.push(opIprevFail, 0)
	} else {
		s.push(opIprevPass, 0)
	}
	if g.chance(0.01) {
		s.push(opRateLimited, 0)
		s.push(opConnEnd, 0)
		return
	}
	if g.chance(0.5) {
		if dubious && g.chance(0.4) {
			s.push(opSpfEhloFail, 0)
		} else {
			s.push(opSpfEhloPass, 0)
		}
	}
	g.newMessage(s, true)
	s.msg.from = remotes[g.rng.IntN(len(remotes))]
	s.push(opMailFrom, 0)
	spfFail := g.chance(0.02) || dubious && g.chance(0.5)
	if spfFail {
		s.push(opSpfFromFail, 0)
	} else {
		s.push(opSpfFromPass, 0)
	}
	for range g.rcptCount() {
		switch r := g.rng.Float64(); {
		case r < 0.03:
			s.push(opMailboxMissing, g.rng.IntN(len(unknownLocal)))
		case r < 0.035:
			s.push(opRelayDenied, g.rng.IntN(len(remotes)))
		default:
			s.msg.rcpt[s.msg.n] = uint8(g.rng.IntN(len(accounts)))
			s.push(opRcptTo, s.msg.n)
			s.msg.n++
		}
	}
	if s.msg.n == 0 || g.chance(0.005) {
		if s.msg.n > 0 {
			s.push(opMsgTooLarge, 0)
		}
		s.push(opQuit, 0)
		s.push(opConnEnd, 0)
		return
	}
	dkimFail := g.chance(0.03) || dubious && g.chance(0.5)
	if dkimFail {
		s.push(opDkimFail, 0)
	} else {
		s.push(opDkimPass, 0)
	}
	if g.chance(0.1) {
		s.push(opArcPass, 0)
	}
	if spfFail && dkimFail {
		s.push(opDmarcFail, 0)
	} else {
		s.push(opDmarcPass, 0)
	}
	s.msg.spam = g.chance(0.03) || dubious && g.chance(0.7)
	s.push(opSpamClassify, 0)
	s.push(opQueueMessage, 0)
	s.push(opQuit, 0)
	s.push(opConnEnd, 0)
}

func (g *Generator) planLocalDelivery(s *session) {
	s.push(opDelStart, 0)
	for i := range s.msg.n {
		switch r := g.rng.Float64(); {
		case s.msg.spam:
			s.push(opIngestSpam, i)
		case r < 0.01:
			s.push(opIngestDup, i)
		case r < 0.013:
			s.push(opIngestError, i)
		default:
			s.push(opIngestHam, i)
		}
	}
	s.push(opDelEnd, 0)
	s.push(opDelCompleted, 0)
}

func (g *Generator) planSubmission(s *session) {
	s.listener, s.port = "submission", 587
	s.push(opConnStart, 0)
	s.push(opSMTPStartTLS, 0)
	s.push(opTLSHandshake, 0)
	s.helo = g.helo(false)
	s.push(opEhlo, 0)
	if g.chance(0.03) {
		s.push(opAuthFailed, s.acct)
		if g.chance(0.5) {
			s.push(opQuit, 0)
			s.push(opConnEnd, 0)
			return
		}
	}
	s.push(opAuthSuccess, 0)
	g.newMessage(s, false)
	s.msg.from = accounts[s.acct].name
	s.push(opMailFrom, 0)
	for range g.rcptCount() {
		s.msg.rcpt[s.msg.n] = uint8(g.rng.IntN(len(remotes)))
		s.push(opRcptTo, s.msg.n)
		s.msg.n++
	}
	s.push(opQueueSubmission, 0)
	s.push(opQuit, 0)
	s.push(opConnEnd, 0)
}

func (g *Generator) planRemoteDelivery(s *session) {
	s.ip, s.rport = g.remoteIP(), 25
	s.push(opDelStart, 0)
	s.push(opDelDomain, 0)
	s.push(opDelMX, 0)
	s.push(opDelIP, 0)
	switch r := g.rng.Float64(); {
	case r < 0.015:
		s.push(opDelConnectErr, 0)
		s.push(opDsnTemp, 0)
		s.push(opRescheduled, 0)
		s.push(opDelEnd, 0)
		return
	case r < 0.03:
		s.push(opDelConnect, 0)
		s.push(opDsnTemp, 1)
		s.push(opRescheduled, 0)
		s.push(opDelEnd, 0)
		return
	}
	s.push(opDelConnect, 0)
	if g.chance(0.95) {
		s.push(opDelStartTLS, 0)
	}
	s.push(opDelMailFrom, 0)
	var rejected [maxRcpt]bool
	nrej := 0
	for i := range s.msg.n {
		if g.chance(0.03) {
			rejected[i] = true
			nrej++
			s.push(opDelRcptRejected, i)
		} else {
			s.push(opDelRcptTo, i)
		}
	}
	if nrej < s.msg.n {
		s.push(opDelivered, 0)
	}
	for i := range s.msg.n {
		if rejected[i] {
			s.push(opDsnPerm, i)
		}
	}
	if nrej > 0 {
		s.push(opQueueDSN, 0)
	}
	s.push(opDelEnd, 0)
	s.push(opDelCompleted, 0)
}

func (g *Generator) planIMAP(s *session) {
	s.listener, s.port = "imaptls", 993
	s.push(opConnStart, 0)
	s.push(opTLSHandshake, 0)
	if g.chance(0.3) {
		s.push(opImapCapabilities, 0)
	}
	if g.chance(0.5) {
		s.push(opImapID, 0)
	}
	if g.chance(0.04) {
		s.push(opAuthFailed, s.acct)
		if !g.chance(0.6) {
			if g.chance(0.1) {
				s.push(opAuthFailed, s.acct)
				s.push(opAuthBanned, 0)
			}
			s.push(opConnEnd, 0)
			return
		}
	}
	s.push(opAuthSuccess, 0)
	s.push(opImapList, 0)
	if g.chance(0.4) {
		for range 1 + g.rng.IntN(3) {
			s.push(opImapStatus, g.rng.IntN(len(mailboxes)))
		}
	}
	s.push(opImapSelect, 0)
	s.push(opImapFetch, 0)
	for range 1 + g.rng.IntN(8) {
		mb := g.rng.IntN(len(mailboxes))
		switch r := g.rng.IntN(100); {
		case r < 25:
			s.push(opImapFetch, 0)
		case r < 35:
			s.push(opImapSearch, 0)
		case r < 50:
			s.push(opImapStore, 0)
		case r < 60:
			s.push(opImapNoop, 0)
		case r < 72:
			s.push(opImapIdleStart, 0)
			s.push(opImapIdleStop, 0)
		case r < 80:
			s.push(opImapStatus, mb)
		case r < 85:
			s.push(opImapMove, mb)
		case r < 88:
			s.push(opImapCopy, mb)
		case r < 94:
			s.push(opImapExpunge, 0)
		case r < 98:
			s.push(opImapAppend, mb)
			s.push(opIngestImapAppend, mb)
		case r < 99:
			s.push(opImapSelect, mb)
		default:
			s.push(opImapError, 0)
		}
	}
	s.push(opImapLogout, 0)
	s.push(opConnEnd, 0)
}

func (g *Generator) planPOP3(s *session) {
	s.listener, s.port = "pop3s", 995
	s.push(opConnStart, 0)
	s.push(opTLSHandshake, 0)
	if g.chance(0.03) {
		s.push(opAuthFailed, s.acct)
		s.push(opConnEnd, 0)
		return
	}
	s.push(opAuthSuccess, 0)
	s.push(opPopStat, 0)
	s.push(opPopUidl, 0)
	for range 1 + g.rng.IntN(5) {
		s.push(opPopFetch, 0)
	}
	if g.chance(0.6) {
		s.push(opPopDelete, 0)
	}
	s.push(opPopQuit, 0)
	s.push(opConnEnd, 0)
}

func (g *Generator) planJMAP(s *session) {
	s.listener, s.port = "https", 443
	s.push(opConnStart, 0)
	s.push(opTLSHandshake, 0)
	s.push(opHTTPURL, 0)
	if g.chance(0.02) {
		s.push(opAuthFailed, s.acct)
		s.push(opConnEnd, 0)
		return
	}
	s.push(opAuthSuccess, 0)
	ws := g.chance(0.1)
	if ws {
		s.push(opJmapWSStart, 0)
	}
	for range 1 + g.rng.IntN(6) {
		s.push(opJmapCall, g.rng.IntN(jmapImport))
	}
	if g.chance(0.1) {
		s.push(opJmapStateMismatch, 0)
	}
	if g.chance(0.05) {
		s.push(opJmapCall, jmapImport)
		s.push(opIngestJmapAppend, 0)
	}
	if ws {
		s.push(opJmapWSStop, 0)
	}
	s.push(opConnEnd, 0)
}

func (g *Generator) planAttack(s *session) {
	if g.chance(0.5) {
		s.listener, s.port = "submission", 587
		s.helo = g.helo(true)
		s.push(opConnStart, 0)
		s.push(opEhlo, 0)
	} else {
		s.listener, s.port = "imaptls", 993
		s.push(opConnStart, 0)
		s.push(opTLSHandshake, 0)
	}
	for range 3 + g.rng.IntN(6) {
		s.push(opAuthFailed, g.rng.IntN(len(logins)))
	}
	switch r := g.rng.Float64(); {
	case r < 0.4:
		s.push(opAuthBanned, 0)
	case r < 0.6:
		s.push(opAuthTooMany, 0)
	}
	s.push(opConnEnd, 0)
}

func (g *Generator) planDvIMAP(s *session) {
	s.dvID = 1 + g.rng.Uint64N(1<<20)
	s.dvSess = g.dovecotSession()
	s.fail = g.chance(0.04)
	s.push(opDvAuthClientStarted, 0)
	s.push(opDvPassdbFinished, 0)
	s.push(opDvAuthFinished, 0)
	s.push(opDvAuthClientFinished, 0)
	if s.fail {
		return
	}
	if g.chance(0.5) {
		s.push(opDvUserdbLookupFinished, 0)
	}
	s.push(opDvImapCommand, dvSelect)
	for range 1 + g.rng.IntN(9) {
		s.push(opDvImapCommand, g.rng.IntN(dvLogout))
	}
	s.push(opDvImapCommand, dvLogout)
}

func (g *Generator) planDvLMTP(s *session) {
	g.newMessage(s, true)
	s.dvSess = g.dovecotSession()
	s.msg.from = remotes[g.rng.IntN(len(remotes))]
	s.msg.n = g.rcptCount()
	for i := range s.msg.n {
		s.msg.rcpt[i] = uint8(g.rng.IntN(len(accounts)))
		s.push(opDvDeliveryStarted, i)
		s.push(opDvDeliveryFinished, i)
	}
}

// helo returns the EHLO name of a well-behaved or a dubious client.
func (g *Generator) helo(dubious bool) string {
	if dubious {
		return badHelos[g.rng.IntN(len(badHelos))]
	}
	return helos[g.rng.IntN(len(helos))]
}

// remoteIP returns an address from the documentation ranges, one in five
// of them IPv6.
func (g *Generator) remoteIP() schema.Value {
	if g.chance(0.2) {
		return ip6Pool[g.rng.IntN(len(ip6Pool))]
	}
	return ip4Pool[g.rng.IntN(len(ip4Pool))]
}

// ms returns a duration uniformly in [lo, hi) milliseconds, in µs steps.
func (g *Generator) ms(lo, hi int64) schema.Value {
	return schema.Duration(time.Duration(lo*1000+g.rng.Int64N((hi-lo)*1000)) * time.Microsecond)
}

// usecs returns a Dovecot duration (µs resolution) in [lo, hi) µs.
func (g *Generator) usecs(lo, hi int64) schema.Value {
	return schema.Duration(time.Duration(lo+g.rng.Int64N(hi-lo)) * time.Microsecond)
}

// at returns the simulated time d after the current event as a value.
func (g *Generator) at(d time.Duration) schema.Value {
	return schema.Time(g.start.Add(time.Duration(g.now) + d))
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func (g *Generator) dovecotSession() string {
	var b [16]byte
	x := g.rng.Uint64()
	for i := range b {
		if i == 10 {
			x = g.rng.Uint64()
		}
		b[i] = b64[x&63]
		x >>= 6
	}
	return string(b[:])
}

func (g *Generator) messageID() string {
	var b [48]byte
	out := append(b[:0], '<')
	out = strconv.AppendUint(out, g.rng.Uint64(), 36)
	out = append(out, '.')
	out = strconv.AppendUint(out, g.rng.Uint64()>>32, 36)
	out = append(out, "@example.net>"...)
	return string(out)
}

func nested(o op, fields ...schema.Field) schema.Value {
	return schema.Nested(&schema.Event{Type: opTypes[o], Level: opLevels[o], Fields: fields})
}

func field(k string, v schema.Value) schema.Field { return schema.Field{Key: k, Value: v} }

// add appends one field to ev.
func add(ev *schema.Event, k string, v schema.Value) {
	ev.Fields = append(ev.Fields, schema.Field{Key: k, Value: v})
}

func str(ev *schema.Event, k, v string)        { add(ev, k, schema.String(v)) }
func num(ev *schema.Event, k string, v uint64) { add(ev, k, schema.Uint(v)) }

// emit writes the fields of one step of s into ev.
func (g *Generator) emit(s *session, st step, ev *schema.Event) {
	if s.server == ServerDovecot {
		g.emitDovecot(s, st, ev)
		return
	}
	m := &s.msg
	a := &accounts[s.acct]
	if st.op != opDropBlocked {
		num(ev, "spanId", s.span)
	}
	switch st.op {
	case opConnStart:
		str(ev, "listenerId", s.listener)
		num(ev, "localPort", s.port)
		add(ev, "remoteIp", s.ip)
		num(ev, "remotePort", s.rport)
	case opConnEnd:
		add(ev, "elapsed", schema.Duration(time.Duration(g.now-s.start)))
	case opDropBlocked:
		str(ev, "listenerId", s.listener)
		add(ev, "remoteIp", s.ip)
		num(ev, "remotePort", s.rport)
	case opTLSHandshake:
		if g.chance(0.8) {
			str(ev, "version", "TLSv1_3")
			str(ev, "details", "TLS13_AES_256_GCM_SHA384")
		} else {
			str(ev, "version", "TLSv1_2")
			str(ev, "details", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
		}
		add(ev, "elapsed", g.ms(1, 40))
	case opSMTPStartTLS, opQuit, opImapNoop, opImapLogout, opImapIdleStart, opJmapWSStart, opPopQuit:
	case opEhlo:
		str(ev, "domain", s.helo)
	case opIprevPass:
		str(ev, "domain", s.helo)
		add(ev, "elapsed", g.ms(1, 60))
	case opIprevFail:
		add(ev, "remoteIp", s.ip)
		add(ev, "elapsed", g.ms(1, 60))
		add(ev, "causedBy", nested(opNestIprevFail, field("remoteIp", s.ip), field("details", schema.String("PTR record does not resolve back to the address"))))
	case opSpfEhloPass, opSpfEhloFail:
		str(ev, "domain", s.helo)
		add(ev, "elapsed", g.ms(1, 80))
	case opMailFrom:
		str(ev, "from", m.from)
	case opSpfFromPass:
		str(ev, "from", m.from)
		str(ev, "result", "pass")
		add(ev, "elapsed", g.ms(1, 80))
	case opSpfFromFail:
		str(ev, "from", m.from)
		if g.chance(0.5) {
			str(ev, "result", "softfail")
			add(ev, "causedBy", nested(opNestSpfSoftFail, field("domain", schema.String("example.net"))))
		} else {
			str(ev, "result", "fail")
			add(ev, "causedBy", nested(opNestSpfFail, field("domain", schema.String("example.net"))))
		}
		add(ev, "elapsed", g.ms(1, 80))
	case opRcptTo:
		str(ev, "to", m.rcptAddr(st.arg))
	case opMailboxMissing:
		str(ev, "to", unknownLocal[st.arg])
	case opRelayDenied:
		str(ev, "to", remotes[st.arg])
	case opMsgTooLarge:
		num(ev, "size", 50<<20+g.rng.Uint64N(10<<20))
		num(ev, "limit", 50<<20)
	case opRateLimited:
		add(ev, "remoteIp", s.ip)
		num(ev, "limit", 100)
		add(ev, "elapsed", schema.Duration(time.Minute))
	case opDkimPass:
		str(ev, "domain", "example.net")
		str(ev, "result", "pass")
		add(ev, "elapsed", g.ms(1, 30))
	case opDkimFail:
		str(ev, "domain", "example.net")
		str(ev, "result", "fail")
		add(ev, "elapsed", g.ms(1, 30))
		add(ev, "causedBy", nested(opNestDkimFail, field("domain", schema.String("example.net")), field("details", schema.String("body hash did not verify"))))
	case opArcPass:
		str(ev, "result", "pass")
		add(ev, "elapsed", g.ms(1, 20))
	case opDmarcPass:
		str(ev, "domain", "example.net")
		str(ev, "policy", "none")
		str(ev, "result", "pass")
		add(ev, "elapsed", g.ms(1, 30))
	case opDmarcFail:
		str(ev, "domain", "example.net")
		str(ev, "policy", "quarantine")
		str(ev, "result", "fail")
		add(ev, "elapsed", g.ms(1, 30))
		add(ev, "causedBy", nested(opNestDmarcFail, field("domain", schema.String("example.net"))))
	case opSpamClassify:
		if m.spam {
			str(ev, "result", "spam")
		} else {
			str(ev, "result", "ham")
		}
		add(ev, "elapsed", g.ms(5, 400))
	case opQueueMessage, opQueueSubmission, opDelStart:
		num(ev, "queueId", m.queueID)
		str(ev, "from", m.from)
		if st.op != opDelStart {
			g.enqueue(m)
		}
		add(ev, "to", m.to)
		num(ev, "size", m.size)
		num(ev, "total", uint64(m.n))
	case opAuthSuccess:
		str(ev, "accountName", a.name)
		num(ev, "accountId", a.id)
		add(ev, "remoteIp", s.ip)
	case opAuthFailed:
		str(ev, "accountName", logins[st.arg])
		add(ev, "remoteIp", s.ip)
		if g.chance(0.2) {
			str(ev, "causedBy", authLocations[g.rng.IntN(len(authLocations))])
		}
	case opAuthBanned:
		add(ev, "remoteIp", s.ip)
		str(ev, "reason", "too many failed authentication attempts")
		g.banned = s.ip
	case opAuthTooMany:
		add(ev, "remoteIp", s.ip)
		num(ev, "limit", 5)
	case opDelDomain:
		str(ev, "domain", "example.net")
	case opDelMX:
		str(ev, "domain", "example.net")
		add(ev, "details", schema.List(schema.String("mx1.example.net"), schema.String("mx2.example.net")))
		add(ev, "elapsed", g.ms(1, 50))
	case opDelIP:
		str(ev, "domain", mxHost(s))
		add(ev, "remoteIp", s.ip)
		add(ev, "elapsed", g.ms(1, 50))
	case opDelConnect:
		str(ev, "hostname", mxHost(s))
		add(ev, "remoteIp", s.ip)
		num(ev, "remotePort", 25)
		add(ev, "elapsed", g.ms(5, 300))
	case opDelConnectErr:
		str(ev, "hostname", mxHost(s))
		add(ev, "remoteIp", s.ip)
		num(ev, "remotePort", 25)
		str(ev, "reason", "connection timed out")
		add(ev, "elapsed", schema.Duration(30*time.Second))
		str(ev, "causedBy", "crates/smtp/src/outbound/delivery.rs:1034")
	case opDelStartTLS:
		str(ev, "hostname", mxHost(s))
		str(ev, "version", "TLSv1_3")
		add(ev, "elapsed", g.ms(5, 120))
	case opDelMailFrom:
		str(ev, "from", m.from)
		num(ev, "code", 250)
		add(ev, "elapsed", g.ms(1, 80))
	case opDelRcptTo:
		str(ev, "to", m.rcptAddr(st.arg))
		num(ev, "code", 250)
		add(ev, "elapsed", g.ms(1, 80))
	case opDelRcptRejected:
		str(ev, "to", m.rcptAddr(st.arg))
		num(ev, "code", 550)
		str(ev, "details", "550 5.1.1 <"+m.rcptAddr(st.arg)+">: Recipient address rejected: User unknown")
	case opDelivered:
		str(ev, "hostname", mxHost(s))
		num(ev, "code", 250)
		str(ev, "details", queuedReplies[g.rng.IntN(len(queuedReplies))])
		add(ev, "elapsed", g.ms(20, 2000))
	case opDsnTemp:
		num(ev, "queueId", m.queueID)
		add(ev, "to", m.to)
		str(ev, "hostname", mxHost(s))
		add(ev, "nextRetry", g.at(5*time.Minute))
		if st.arg == 0 {
			str(ev, "details", "connection timed out")
		} else {
			str(ev, "details", "421 4.3.2 Service not available, try again later")
			add(ev, "causedBy", nested(opNestGreetingFailed, field("hostname", schema.String(mxHost(s))), field("code", schema.Uint(421))))
		}
	case opDsnPerm:
		num(ev, "queueId", m.queueID)
		str(ev, "to", m.rcptAddr(st.arg))
		str(ev, "hostname", mxHost(s))
		num(ev, "code", 550)
		str(ev, "details", "550 5.1.1 User unknown")
		add(ev, "causedBy", nested(opNestRcptRejected, field("to", schema.String(m.rcptAddr(st.arg))), field("code", schema.Uint(550))))
	case opQueueDSN:
		g.queueSeq++
		num(ev, "queueId", g.queueSeq)
		str(ev, "to", m.from)
		num(ev, "size", 2000+g.rng.Uint64N(2000))
	case opRescheduled:
		num(ev, "queueId", m.queueID)
		add(ev, "nextRetry", g.at(5*time.Minute))
		add(ev, "nextDsn", g.at(4*time.Hour))
		add(ev, "expires", g.at(5*24*time.Hour))
	case opDelEnd:
		num(ev, "queueId", m.queueID)
		add(ev, "elapsed", schema.Duration(time.Duration(g.now-s.start)))
	case opDelCompleted:
		num(ev, "queueId", m.queueID)
	case opIngestHam, opIngestSpam, opIngestDup, opIngestError:
		r := &accounts[m.rcpt[st.arg]]
		str(ev, "accountName", r.name)
		num(ev, "accountId", r.id)
		str(ev, "messageId", m.msgID)
		switch st.op {
		case opIngestHam, opIngestSpam:
			if st.op == opIngestSpam {
				str(ev, "mailboxName", "Junk Mail")
			} else {
				str(ev, "mailboxName", "INBOX")
			}
			num(ev, "documentId", g.rng.Uint64N(200000))
			num(ev, "size", m.size)
			add(ev, "elapsed", g.ms(2, 150))
		case opIngestError:
			str(ev, "reason", "quota exceeded")
			str(ev, "causedBy", "crates/store/src/write/mod.rs:412")
		}
	case opImapCapabilities, opImapID:
		str(ev, "details", "Thunderbird 128.5.0")
	case opImapList:
		num(ev, "total", uint64(len(mailboxes)))
		add(ev, "elapsed", g.ms(1, 20))
	case opImapStatus, opImapSelect, opImapMove, opImapCopy:
		str(ev, "mailboxName", mailboxes[st.arg])
		num(ev, "total", g.rng.Uint64N(5000))
		add(ev, "elapsed", g.ms(1, 40))
	case opImapFetch, opImapSearch, opImapStore, opImapExpunge:
		str(ev, "mailboxName", "INBOX")
		num(ev, "total", 1+g.rng.Uint64N(200))
		add(ev, "elapsed", g.ms(1, 120))
	case opImapAppend:
		str(ev, "mailboxName", mailboxes[st.arg])
		num(ev, "size", 1000+uint64(g.rng.ExpFloat64()*20000))
		add(ev, "elapsed", g.ms(5, 200))
	case opIngestImapAppend:
		str(ev, "accountName", a.name)
		num(ev, "accountId", a.id)
		str(ev, "mailboxName", mailboxes[st.arg])
		num(ev, "documentId", g.rng.Uint64N(200000))
	case opImapIdleStop, opJmapWSStop:
		add(ev, "elapsed", schema.Duration(time.Duration(g.now-s.start)))
	case opImapError:
		str(ev, "details", "Message no longer exists")
		str(ev, "causedBy", "crates/imap/src/op/fetch.rs:211")
	case opPopStat, opPopUidl:
		num(ev, "total", g.rng.Uint64N(300))
		num(ev, "size", g.rng.Uint64N(50<<20))
	case opPopFetch:
		num(ev, "documentId", g.rng.Uint64N(200000))
		num(ev, "size", 1500+uint64(g.rng.ExpFloat64()*30000))
		add(ev, "elapsed", g.ms(1, 60))
	case opPopDelete:
		num(ev, "total", 1+g.rng.Uint64N(5))
	case opHTTPURL:
		str(ev, "url", "/jmap/")
	case opJmapCall:
		str(ev, "id", jmapMethods[st.arg])
		num(ev, "accountId", a.id)
		add(ev, "elapsed", g.ms(1, 90))
	case opJmapStateMismatch:
		num(ev, "accountId", a.id)
		str(ev, "details", "Email/set ifInState mismatch")
	case opIngestJmapAppend:
		str(ev, "accountName", a.name)
		num(ev, "accountId", a.id)
		str(ev, "mailboxName", "INBOX")
		num(ev, "documentId", g.rng.Uint64N(200000))
	}
}

// emitDovecot writes the fields of one step of a Dovecot session into ev,
// with Dovecot's field names and durations in µs.
func (g *Generator) emitDovecot(s *session, st step, ev *schema.Event) {
	a := &accounts[s.acct]
	switch st.op {
	case opDvAuthClientStarted, opDvAuthClientFinished:
		num(ev, "id", s.dvID)
		str(ev, "service", "imap")
		add(ev, "remote_ip", s.ip)
		num(ev, "remote_port", s.rport)
		num(ev, "local_port", 993)
		if st.op == opDvAuthClientFinished {
			if s.fail {
				str(ev, "error", "Authentication failed")
			}
			add(ev, "duration", g.usecs(800, 60000))
		}
	case opDvPassdbFinished:
		str(ev, "passdb", "ldap")
		str(ev, "passdb_name", "ldap")
		num(ev, "passdb_id", 0)
		str(ev, "user", a.name)
		str(ev, "username", a.local)
		str(ev, "domain", a.domain)
		if s.fail {
			str(ev, "result", "password_mismatch")
		} else {
			str(ev, "result", "ok")
		}
		add(ev, "duration", g.usecs(300, 20000))
	case opDvAuthFinished:
		str(ev, "user", a.name)
		str(ev, "service", "imap")
		str(ev, "mechanism", "PLAIN")
		str(ev, "transport", "TLS")
		add(ev, "remote_ip", s.ip)
		num(ev, "remote_port", s.rport)
		if s.fail {
			str(ev, "error", "Password mismatch")
		} else {
			str(ev, "success", "yes")
			str(ev, "credentials_scheme", "SHA512-CRYPT")
		}
		add(ev, "duration", g.usecs(500, 40000))
	case opDvUserdbLookupFinished:
		str(ev, "service", "imap")
		add(ev, "remote_ip", s.ip)
		num(ev, "remote_port", s.rport)
		num(ev, "local_port", 993)
		str(ev, "user", a.name)
		add(ev, "duration", g.usecs(200, 8000))
	case opDvImapCommand:
		c := &dvCommands[st.arg]
		str(ev, "user", a.name)
		str(ev, "session", s.dvSess)
		add(ev, "remote_ip", s.ip)
		num(ev, "remote_port", s.rport)
		str(ev, "tag", dvTags[s.pos%len(dvTags)])
		str(ev, "name", c.name)
		str(ev, "args", c.args)
		reply := c.ok
		state := "OK"
		if g.chance(0.01) {
			reply, state = "NO [SERVERBUG] Internal error occurred.", "NO"
		}
		str(ev, "tagged_reply_state", state)
		str(ev, "tagged_reply", reply)
		run := 50 + g.rng.Int64N(c.usecs)
		num(ev, "running_usecs", uint64(run))
		num(ev, "lock_wait_usecs", g.rng.Uint64N(200))
		num(ev, "bytes_in", c.in)
		num(ev, "bytes_out", c.out+g.rng.Uint64N(c.out*8+1))
		add(ev, "duration", schema.Duration(time.Duration(run+g.rng.Int64N(500))*time.Microsecond))
	case opDvDeliveryStarted, opDvDeliveryFinished:
		m := &s.msg
		str(ev, "user", m.rcptAddr(st.arg))
		str(ev, "session", s.dvSess)
		str(ev, "message_id", m.msgID)
		str(ev, "message_subject", subjects[m.queueID%uint64(len(subjects))])
		str(ev, "message_from", m.from)
		num(ev, "message_size", m.size)
		num(ev, "message_vsize", m.size+m.size/40)
		str(ev, "rcpt_to", m.rcptAddr(st.arg))
		if st.op == opDvDeliveryFinished {
			add(ev, "duration", g.usecs(2000, 200000))
		}
	case opDvClientConnected, opDvClientDisconnected, opDvServerConnected, opDvServerDisconnected:
		add(ev, "client_ip", s.ip)
		num(ev, "client_port", s.rport)
		add(ev, "ip", ip4Pool[s.span%uint64(len(ip4Pool))])
		num(ev, "port", 12345)
		if st.op == opDvClientDisconnected || st.op == opDvServerDisconnected {
			num(ev, "bytes_in", 100+g.rng.Uint64N(100000))
			num(ev, "bytes_out", 100+g.rng.Uint64N(100000))
			str(ev, "reason", dvReasons[st.arg])
			add(ev, "duration", schema.Duration(time.Duration(g.now-s.start)))
		}
	case opDvHTTPRetried, opDvHTTPFinished:
		str(ev, "dest_host", "push.example.net")
		str(ev, "method", "POST")
		str(ev, "target", "/v1/notify")
		if st.op == opDvHTTPRetried {
			num(ev, "status_code", 503)
			num(ev, "attempts", 1)
		} else {
			num(ev, "status_code", 200)
			num(ev, "attempts", uint64(s.n))
		}
		num(ev, "redirects", 0)
		num(ev, "bytes_in", 64+g.rng.Uint64N(512))
		num(ev, "bytes_out", 200+g.rng.Uint64N(2048))
		add(ev, "duration", g.usecs(5000, 400000))
	}
}

// mxHost is the remote MX a delivery session talks to.
func mxHost(s *session) string {
	if s.span&1 == 0 {
		return "mx1.example.net"
	}
	return "mx2.example.net"
}

// Pools of strings and values, built once; Values are immutable and shared.
type account struct {
	name, local, domain string
	id                  uint64
}

var (
	accounts = func() []account {
		names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
			"ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
			"trent", "victor", "walter", "wendy", "xavier", "yvonne", "zoe", "arthur",
			"beatrice", "cedric", "daphne", "edgar", "fiona", "gustav", "helga", "igor"}
		out := make([]account, len(names))
		for i, n := range names {
			d := "example.com"
			if i%4 == 3 {
				d = "example.org"
			}
			out[i] = account{name: n + "@" + d, local: n, domain: d, id: uint64(i + 1)}
		}
		return out
	}()
	remotes = []string{"newsletter@example.net", "billing@example.net", "noreply@example.net",
		"support@example.net", "jobs@example.net", "events@example.net", "team@example.net",
		"hello@example.net", "j.smith@example.net", "m.jones@example.net", "k.tanaka@example.net",
		"l.garcia@example.net", "p.novak@example.net", "a.kowalski@example.net",
		"s.mueller@example.net", "r.rossi@example.net"}
	unknownLocal = []string{"info@example.com", "sales@example.com", "webmaster@example.org",
		"admin@example.com", "hr@example.org"}
	// logins are the account names of auth.failed: the real accounts, then
	// the names password guessers try.
	logins = func() []string {
		out := make([]string, 0, len(accounts)+8)
		for _, a := range accounts {
			out = append(out, a.name)
		}
		return append(out, "admin", "test", "root", "user", "info@example.com",
			"support@example.com", "administrator", "postmaster@example.com")
	}()
	helos         = []string{"mail.example.net", "mx-out1.example.net", "mx-out2.example.net", "smtp.example.net", "relay.example.org"}
	badHelos      = []string{"localhost", "User", "unknown.example.net", "ylmf-pc", "[203.0.113.66]"}
	authLocations = []string{"crates/common/src/auth/mod.rs:112", "crates/directory/src/backend/internal/lookup.rs:78",
		"crates/smtp/src/inbound/auth.rs:201", "crates/imap/src/op/authenticate.rs:143"}
	queuedReplies = []string{"250 2.0.0 Ok: queued as 4B7F12C03A", "250 2.0.0 Ok: queued as 9E21AA0F17",
		"250 2.0.0 OK 1735689600 a1b2c3d4e5", "250 Message accepted for delivery"}
	mailboxes   = []string{"INBOX", "Sent Items", "Drafts", "Archive", "Junk Mail", "Deleted Items", "Lists/golang"}
	jmapMethods = []string{"Email/get", "Email/query", "Mailbox/get", "Email/changes", "Thread/get",
		"Email/set", "Identity/get", "Email/import"}
	subjects = []string{"Your invoice", "Meeting tomorrow", "Re: project update", "Weekly newsletter",
		"Fwd: photos", "Password reset", "Quarterly report", "Lunch?"}
	dvReasons = []string{"Connection closed", "Deinitializing", "Idle timeout", "Server shutting down"}
	dvTags    = func() []string {
		out := make([]string, maxSteps)
		for i := range out {
			out[i] = "a" + strconv.Itoa(i+1)
		}
		return out
	}()
	ip4Pool = func() []schema.Value {
		var out []schema.Value
		for _, p := range [][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}} {
			for h := 1; h < 255; h++ {
				out = append(out, schema.IP(netip.AddrFrom4([4]byte{p[0], p[1], p[2], byte(h)})))
			}
		}
		return out
	}()
	ip6Pool = func() []schema.Value {
		out := make([]schema.Value, 0, 128)
		for i := range 128 {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
			b[5] = byte(i / 8)
			b[15] = byte(1 + i*7)
			out = append(out, schema.IP(netip.AddrFrom16(b)))
		}
		return out
	}()
)

// jmapImport is the index of "Email/import", the last of jmapMethods;
// plain method calls draw from those before it.
var jmapImport = len(jmapMethods) - 1

// dvCommands are the IMAP commands of Dovecot sessions; the plan draws from
// those before dvLogout.
var dvCommands = []struct {
	name, args, ok string
	usecs          int64
	in, out        uint64
}{
	{"SELECT", "INBOX", "OK [READ-WRITE] Select completed.", 3000, 20, 400},
	{"UID FETCH", "1:* (FLAGS)", "OK Fetch completed.", 20000, 30, 2000},
	{"UID FETCH", "4211 (BODY.PEEK[])", "OK Fetch completed.", 8000, 35, 30000},
	{"IDLE", "", "OK Idle completed.", 500, 10, 60},
	{"STATUS", "\"Sent Items\" (MESSAGES UNSEEN)", "OK Status completed.", 1500, 45, 80},
	{"UID SEARCH", "UNSEEN", "OK Search completed.", 6000, 25, 120},
	{"UID STORE", "4211 +FLAGS (\\Seen)", "OK Store completed.", 1200, 35, 60},
	{"LIST", "\"\" \"*\"", "OK List completed.", 2500, 20, 600},
	{"UID MOVE", "4211 \"Archive\"", "OK Move completed.", 4000, 30, 90},
	{"NOOP", "", "OK NOOP completed.", 300, 10, 20},
	{"LOGOUT", "", "OK Logout completed.", 200, 10, 60},
}

// dvSelect and dvLogout are the indexes of SELECT (the first) and LOGOUT
// (the last) in dvCommands.
var dvSelect, dvLogout = 0, len(dvCommands) - 1
