package tools

import (
	"bytes"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// The /metrics page is Prometheus' text format, and Prometheus' own linter
// (promlint) finds nothing in it: every family has # HELP and # TYPE
// lines, counters end in _total, histograms have le buckets up to +Inf.
// TestMetricsLint and TestMetricsDocumented hold it to that.
//
// VictoriaMetrics/metrics writes the # HELP and # TYPE lines but no help
// text, so the help of every family lives in metricHelp below, keyed by
// family name (without labels). To add a metric:
//
//  1. create it once, when its component starts, in the component's
//     metrics.Set: gonets_<area>_<what>_<unit>, counters ending in _total,
//     histograms from NewPrometheusHistogramExt, no label per chat or user,
//     every label value created up front so the series exist before their
//     first event;
//  2. add a one-line help text to metricHelp;
//  3. add a row to the metrics table in docs/operations.md.
//
// TestMetricsDocumented names whatever step was missed.

// writeMetrics writes the /metrics page: sets, then the library's default
// and registered sets, the Go runtime and the process (CPU, memory, I/O,
// open files), every family with its help text, and the library's
// families that the linter rejects renamed or retyped (metricFixes).
func writeMetrics(w io.Writer, sets ...*metrics.Set) {
	metrics.ExposeMetadata(true)
	var page bytes.Buffer
	for _, s := range sets {
		s.WritePrometheus(&page)
	}
	metrics.WritePrometheus(&page, true)
	metrics.WriteFDMetrics(&page)
	out := make([]byte, 0, page.Len()+page.Len()/2)
	for line := range bytes.Lines(page.Bytes()) {
		out = appendMetricLine(out, line)
	}
	w.Write(out) // a scraper gone mid-page is not the node's concern
}

// appendMetricLine appends line, a line of the library's output ending in
// '\n', to b: # HELP gets the family's help text, and a family in
// metricFixes its name and type.
func appendMetricLine(b, line []byte) []byte {
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		name, help, _ := strings.Cut(strings.TrimSpace(string(line[len("# HELP "):])), " ")
		if f, ok := metricFixes[name]; ok {
			name = f.name
		}
		if h := helpFor(name); h != "" {
			help = h
		}
		b = append(append(b, "# HELP "...), name...)
		if help != "" {
			b = append(append(b, ' '), help...)
		}
		return append(b, '\n')
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		name, typ, _ := strings.Cut(strings.TrimSpace(string(line[len("# TYPE "):])), " ")
		if f, ok := metricFixes[name]; ok {
			name, typ = f.name, f.typ
		}
		b = append(append(b, "# TYPE "...), name...)
		b = append(append(b, ' '), typ...)
		return append(b, '\n')
	}
	if i := bytes.IndexAny(line, "{ "); i > 0 {
		if f, ok := metricFixes[string(line[:i])]; ok {
			return append(append(b, f.name...), line[i:]...)
		}
	}
	return append(b, line...)
}

// helpFor returns the help text of the family name: metricHelp's, or for
// a Go runtime or process family that metricHelp lacks (those the library
// writes on other platforms than Linux, or adds in a later version), a
// generic one. A gonets_* family without an entry gets none, and
// TestMetricsLint fails.
func helpFor(name string) string {
	if h, ok := metricHelp[name]; ok {
		return h
	}
	if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
		return libraryHelp
	}
	return ""
}

// libraryHelp is the help of a go_* or process_* family without its own.
const libraryHelp = "Go runtime or process metric written by github.com/VictoriaMetrics/metrics."

// metricFixes renames or retypes the library's families that promlint
// rejects: counters and a gauge named _count (the suffix of a histogram's
// or summary's count), and /proc/self/io's cumulative totals typed gauge.
var metricFixes = map[string]struct{ name, typ string }{
	"go_cgo_calls_count":                     {"go_cgo_calls_total", "counter"},
	"go_gc_forced_count":                     {"go_gc_forced_total", "counter"},
	"go_cpu_count":                           {"go_cpus", "gauge"},
	"process_io_read_bytes_total":            {"process_io_read_bytes_total", "counter"},
	"process_io_written_bytes_total":         {"process_io_written_bytes_total", "counter"},
	"process_io_read_syscalls_total":         {"process_io_read_syscalls_total", "counter"},
	"process_io_write_syscalls_total":        {"process_io_write_syscalls_total", "counter"},
	"process_io_storage_read_bytes_total":    {"process_io_storage_read_bytes_total", "counter"},
	"process_io_storage_written_bytes_total": {"process_io_storage_written_bytes_total", "counter"},
}

// metricHelp is the help text of every family on /metrics, by family
// name. One line each, no backslash.
var metricHelp = map[string]string{
	// tools/serve.go
	"gonets_node_ready":      "1 while the node takes clients (as /readyz answers 200), else 0.",
	"gonets_node_build_info": "Always 1; the version label is the node's build.",

	// storage/metrics.go
	"gonets_storage_appends_total":           "Messages appended: written to a batch, dedupe hits excluded.",
	"gonets_storage_append_bytes_total":      "Body bytes of the messages appended.",
	"gonets_storage_dedupe_hits_total":       "Appends answered with an earlier ack because their client message id was seen within the dedupe window.",
	"gonets_storage_commits_total":           "Group commits whose WAL sync succeeded.",
	"gonets_storage_syncs_total":             "WAL syncs the committer asked for, one per group commit that wrote anything.",
	"gonets_storage_sync_delay_seconds":      "Time a group commit held its batch under load for more messages to share its WAL sync.",
	"gonets_storage_commit_errors_total":     "Group commits or WAL syncs that failed; the store refuses writes after one until it has reopened its database.",
	"gonets_storage_batch_messages":          "Messages appended per group commit.",
	"gonets_storage_batch_bytes":             "Body bytes per group commit.",
	"gonets_storage_commit_seconds":          "Time a group commit took, from taking its batch off the queue to durable.",
	"gonets_storage_sync_seconds":            "Time a group commit waited for its WAL sync.",
	"gonets_storage_retention_deleted_total": "Log records deleted by retention sweeps.",
	"gonets_storage_dedupe_expired_total":    "Dedupe entries deleted after the dedupe window.",
	"gonets_storage_sweep_errors_total":      "Retention sweeps that failed.",
	"gonets_storage_failures_total":          "Times the store failed (a WAL write or sync, a flush, or a read while committing failed) and began refusing writes until it reopened its database.",
	"gonets_storage_recoveries_total":        "Times a failed store reopened its database and took writes again.",
	"gonets_storage_background_errors_total": "Flushes and compactions that failed in Pebble's background; a failed flush also fails the store.",
	"gonets_storage_cached_chats":            "Chats whose state the committer holds in memory.",
	"gonets_storage_queued_bytes":            "Body bytes of the appends waiting for the committer.",

	// broker/broker.go
	"gonets_broker_sessions":                        "Sessions open now.",
	"gonets_broker_handshakes_total":                "Sessions opened: Hello answered with Welcome.",
	"gonets_broker_auth_failures_total":             "Hellos refused because the token did not verify.",
	"gonets_broker_requests_total":                  "Requests received from sessions.",
	"gonets_broker_request_errors_total":            "Requests answered with an error.",
	"gonets_broker_rate_limited_total":              "Requests refused by the per-user send rate limit.",
	"gonets_broker_messages_total":                  "Messages accepted from clients, duplicates excluded.",
	"gonets_broker_deliveries_total":                "Pushes of a message queued to a session.",
	"gonets_broker_push_writes_total":               "Writes of queued pushes to sessions' push streams.",
	"gonets_broker_push_coalesce_waits_total":       "Push writes that waited out the rest of the coalescing window for more pushes to join them.",
	"gonets_broker_calls_started_total":             "Calls started.",
	"gonets_broker_calls_ended_total":               "Calls ended, whatever the reason.",
	"gonets_broker_calls_missed_total":              "Calls that ended with no one but the caller in them (declined, unanswered, cancelled).",
	"gonets_broker_calls":                           "Calls running now.",
	"gonets_broker_call_participants":               "Devices in a call now.",
	"gonets_broker_call_pushes_lost_total":          "Call pushes a device needed (ring, offer, candidate, end, removal) lost: its outbox refused them and its call backlog was full.",
	"gonets_broker_tcp_heartbeats_total":            "Heartbeats written to TCP sessions the node had written nothing to for broker.tcp_heartbeat.",
	"gonets_broker_push_drops_total":                "Pushes an outbox refused, by reason: full (it filled up and stalled), stalled (it waits for the client to resync), closed (its session had ended).",
	"gonets_broker_session_closes_total":            "Authenticated sessions that ended, by reason: client (closed by the client or the connection broke), push_timeout, response_timeout, bad_frame, token_expired, replaced (the user opened more sessions than allowed), device_ended (the device was ended).",
	"gonets_broker_hello_timeouts_total":            "Connections closed because they did not authenticate within the hello timeout.",
	"gonets_broker_unauthenticated_connections":     "Connections waiting to authenticate now.",
	"gonets_broker_index_chats":                     "Chats with a member online on this node or an append in flight.",
	"gonets_broker_index_members":                   "Online (user, chat) pairs in the fan-out index.",
	"gonets_broker_unauthenticated_evictions_total": "Connections waiting to authenticate that a newer one evicted, by bound: node (the node's limit) or address (the per-address limit).",
	"gonets_broker_handshakes_in_progress":          "TLS handshakes holding a slot now: their ClientHello read, their first flight not yet computed.",
	"gonets_broker_handshakes_waiting":              "TLS handshakes waiting for a slot now (broker.max_handshakes all held).",
	"gonets_broker_handshake_slots_reclaimed_total": "Handshake slots taken back from a handshake that held one past broker.handshake_hold while another waited (over QUIC, a client silent after a HelloRetryRequest), and handed to the waiter.",
	"gonets_broker_handshakes_refused_total":        "TLS handshakes refused for the handshake bound, by reason: wait (waited past broker.handshake_wait) or queue_full (the oldest waiter, pushed out by a newer one).",
	"gonets_broker_resyncs_total":                   "Resync frames sent to sessions that had pushes dropped.",
	"gonets_broker_bad_frames_total":                "Frames from clients that did not decode or broke the protocol.",
	"gonets_broker_preauth_requests_total":          "Pre-authentication requests (login_start, login_verify, token_refresh) received before Hello.",
	"gonets_broker_service_note_failures_total":     "Service messages (a new login's note) the node could not post in a user's service chat.",
	"gonets_identity_logins_total":                  "Logins: devices added to accounts after a verified code.",
	"gonets_identity_accounts_created_total":        "Accounts created by a number's first login.",
	"gonets_identity_refreshes_total":               "Refresh tokens traded for new tokens.",
	"gonets_identity_refresh_reused_total":          "Refresh tokens presented a second time; each ended its device.",
	"gonets_identity_refresh_invalid_total":         "Refresh tokens refused as unknown, malformed, expired or of an ended device.",
	"gonets_identity_devices_ended_total":           "Devices ended: by their user, by a reused refresh token, or expired.",
	"gonets_identity_codes_sent_total":              "Login codes handed to the SMS adapter.",
	"gonets_identity_sms_failures_total":            "Login codes the SMS adapter failed to deliver (the client is told SMS_UNAVAILABLE, retryable).",
	"gonets_identity_codes_pending":                 "Login codes issued and not yet used, expired or burnt.",
	"gonets_identity_refused_total":                 "Login requests refused, by reason: bad_phone, country, not_mobile, unknown_range, virtual, rate_number, rate_address, rate_prefix, wrong_code, code_expired, too_many_tries.",

	// identity/statesvc, identity/esia, identity/signing, identity/status (tools/state.go)
	"gonets_state_links_total":                               "Gosuslugi links, by outcome: linked (the app finished it with its code), failed (a used or expired link or code, the user's refusal, or ESIA's error).",
	"gonets_state_credentials_issued_total":                  "Digital IDs issued.",
	"gonets_esia_requests_total":                             "Calls to ESIA and its signer, by endpoint (ac, te, prns, signer) and outcome (ok, denied, invalid_grant, rejected, protocol, unavailable, canceled).",
	"gonets_esia_request_duration_seconds":                   "Time of a call to ESIA or its signer, by endpoint.",
	"gonets_signing_submitted_total":                         "Signing requests the node took (posted in a chat and kept until they end).",
	"gonets_signing_ended_total":                             "Signing requests ended, by state: signed, declined, expired, failed.",
	"gonets_signing_provider_calls_total":                    "Calls to the signing service, by endpoint (start, status) and outcome (ok, retry, rejected, refused, bad).",
	"gonets_signing_provider_call_seconds":                   "Time of a call to the signing service, by endpoint.",
	"gonets_media_put_seconds":                               "Time to store a file sent in one request (received, hashed, synced).",
	"gonets_media_chunk_seconds":                             "Time to store one chunk of a resumable upload.",
	"gonets_media_complete_seconds":                          "Time to complete a resumable upload (hash and publish).",
	"gonets_media_received_bytes_total":                      "Bytes of files and chunks received.",
	"gonets_media_blobs_created_total":                       "Files stored that the node did not hold.",
	"gonets_media_dedup_total":                               "Uploads whose content the node held already.",
	"gonets_media_gc_blobs_removed_total":                    "Files collected: referenced by no message for the grace period.",
	"gonets_media_gc_removed_bytes_total":                    "Bytes of the files collected.",
	"gonets_media_uploads_expired_total":                     "Resumable uploads dropped after staying idle for the upload TTL.",
	"gonets_media_refused_total":                             "Uploads and chunks refused, by reason.",
	"gonets_media_blobs":                                     "Files stored.",
	"gonets_media_uploads_open":                              "Resumable uploads open.",
	"gonets_bots_webhook_delivered_total":                    "Updates a bot's webhook answered with a 2xx.",
	"gonets_bots_webhook_failed_total":                       "Webhook delivery attempts that failed (an error, a timeout, a redirect, a status not 2xx); retried with backoff.",
	"gonets_bots_webhook_given_up_total":                     "Updates dropped for a webhook: still failing after bots.webhook_give_up, or while the webhook is given up on.",
	"gonets_bots_webhook_disabled_total":                     "Webhooks removed after failing for bots.webhook_disable_after.",
	"gonets_signing_provider_errors_total":                   "Calls to the signing service that failed; the request is tried again later.",
	"gonets_signing_finish_errors_total":                     "Signing outcomes that could not be posted in their chat; posted again later.",
	"gonets_signing_kv_errors_total":                         "Writes of signing requests to the accounts store that failed.",
	"gonets_signing_pending_requests":                        "Signing requests whose end is not yet posted in their chat.",
	"gonets_identity_status_polls_total":                     "Polls of a linked user's application statuses, by result: ok, failed, forgotten (the user unlinked during it).",
	"gonets_identity_status_poll_duration_seconds":           "Time of one linked user's poll, posts included.",
	"gonets_identity_status_source_request_duration_seconds": "Time of a call to the status API, retries included.",
	"gonets_identity_status_posted_total":                    "Application statuses posted in users' Gosuslugi chats.",
	"gonets_identity_status_post_failures_total":             "Application statuses that could not be posted; posted at the next poll.",
	"gonets_identity_status_list_failures_total":             "Walks of the linked users that failed.",
	"gonets_identity_status_users_scheduled":                 "Linked users whose statuses are polled.",
	"gonets_identity_status_source_requests_total":           "Requests to the status API, by result: ok, none, rejected, invalid, unavailable, 429.",
	"gonets_identity_status_source_retries_total":            "Requests to the status API retried after a network error, a timeout, 429 or 5xx.",

	// callsfu/sfu.go
	"gonets_calls_rooms":                           "Calls whose media the SFU carries now.",
	"gonets_calls_participants":                    "Devices with PeerConnections in the SFU now.",
	"gonets_calls_forwarded_packets_total":         "RTP packets the SFU forwarded to subscribers.",
	"gonets_calls_resent_packets_total":            "RTP packets resent to subscribers from the SFU's rings, answering their NACKs.",
	"gonets_calls_nacked_packets_total":            "RTP packets subscribers reported lost (NACKed).",
	"gonets_calls_resend_refused_packets_total":    "RTP packets subscribers NACKed that the SFU did not resend: over the subscriber's resend budget (one per 4 packets sent to it, 64 in reserve), or resent to it less than 100 ms before.",
	"gonets_calls_keyframe_requests_total":         "Keyframe requests, by direction: to=sfu (PLI or FIR from subscribers), to=publisher (sent by the SFU, at most once a second per layer).",
	"gonets_calls_participants_removed_total":      "Devices the SFU took out of a call, by reason: silent, ice_failed, slow_events, client_closed, stream_ended, never_connected.",
	"gonets_calls_tcp_dropped_packets_total":       "Media packets dropped because an ICE-TCP connection's queue was full.",
	"gonets_calls_tcp_stalled_connections_total":   "ICE-TCP connections closed because their socket took nothing for 2 s.",
	"gonets_calls_tcp_refused_connections_total":   "ICE-TCP connections the SFU closed before their first STUN binding was answered, by reason: unbound_cap (over the cap of such connections, 128 in all, 8 from one address), bind_timeout (not answered within 3 s).",
	"gonets_calls_recording_dropped_packets_total": "RTP packets call recordings dropped because a recorded track's queue was full (its file fell behind).",
	"gonets_calls_recording_lost_packets_total":    "RTP packets call recordings never received: a sequence hole no retransmission filled within 250 ms.",

	// callsfu/turn.go
	"gonets_calls_turn_allocations":               "TURN relay allocations open now.",
	"gonets_calls_turn_allocations_total":         "TURN relay allocations made.",
	"gonets_calls_turn_allocations_refused_total": "TURN allocations refused for a quota: a user's calls.turn_max_user_allocations or calls.turn_max_allocations in all.",
	"gonets_calls_turn_auth_failures_total":       "TURN requests refused for their credential, by reason: expired, malformed (not expiry:user), bad_credential (the password is not the HMAC of the username).",

	// The Go runtime, as github.com/VictoriaMetrics/metrics writes it.
	"go_sched_latencies_seconds":          "Time goroutines spent runnable before they ran.",
	"go_mutex_wait_seconds_total":         "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex.",
	"go_gc_mark_assist_cpu_seconds_total": "CPU time goroutines spent assisting the garbage collector.",
	"go_gc_cpu_seconds_total":             "CPU time spent in the garbage collector.",
	"go_gc_pauses_seconds":                "Stop-the-world pauses of the garbage collector.",
	"go_scavenge_cpu_seconds_total":       "CPU time spent returning unused memory to the OS.",
	"go_memlimit_bytes":                   "The Go memory limit (GOMEMLIMIT).",
	"go_memstats_alloc_bytes":             "Bytes of allocated heap objects.",
	"go_memstats_alloc_bytes_total":       "Bytes allocated for heap objects since the process started.",
	"go_memstats_buck_hash_sys_bytes":     "Bytes of memory in profiling bucket hash tables.",
	"go_memstats_frees_total":             "Heap objects freed since the process started.",
	"go_memstats_gc_cpu_fraction":         "Fraction of the CPU time available to the process used by the garbage collector since it started.",
	"go_memstats_gc_sys_bytes":            "Bytes of memory in garbage collector metadata.",
	"go_memstats_heap_alloc_bytes":        "Bytes of allocated heap objects.",
	"go_memstats_heap_idle_bytes":         "Bytes in idle heap spans.",
	"go_memstats_heap_inuse_bytes":        "Bytes in in-use heap spans.",
	"go_memstats_heap_objects":            "Allocated heap objects.",
	"go_memstats_heap_released_bytes":     "Bytes of physical memory returned to the OS.",
	"go_memstats_heap_sys_bytes":          "Bytes of heap memory obtained from the OS.",
	"go_memstats_last_gc_time_seconds":    "When the last garbage collection finished, in seconds since the Unix epoch.",
	"go_memstats_lookups_total":           "Pointer lookups performed by the runtime.",
	"go_memstats_mallocs_total":           "Heap objects allocated since the process started.",
	"go_memstats_mcache_inuse_bytes":      "Bytes in mcache structures in use.",
	"go_memstats_mcache_sys_bytes":        "Bytes of memory obtained from the OS for mcache structures.",
	"go_memstats_mspan_inuse_bytes":       "Bytes in mspan structures in use.",
	"go_memstats_mspan_sys_bytes":         "Bytes of memory obtained from the OS for mspan structures.",
	"go_memstats_next_gc_bytes":           "Heap size at which the next garbage collection starts.",
	"go_memstats_other_sys_bytes":         "Bytes of memory in other off-heap runtime allocations.",
	"go_memstats_stack_inuse_bytes":       "Bytes in stack spans.",
	"go_memstats_stack_sys_bytes":         "Bytes of stack memory obtained from the OS.",
	"go_memstats_sys_bytes":               "Bytes of memory obtained from the OS in all.",
	"go_cgo_calls_total":                  "Cgo calls made by the process.",
	"go_cpus":                             "Logical CPUs the process may run on.",
	"go_gc_duration_seconds":              "Garbage collection pauses; quantiles over the last 256 collections.",
	"go_gc_forced_total":                  "Garbage collections forced by a call to runtime.GC.",
	"go_gomaxprocs":                       "GOMAXPROCS: OS threads that may run Go code at once.",
	"go_goroutines":                       "Goroutines that exist now.",
	"go_threads":                          "OS threads created by the Go runtime.",
	"go_info":                             "Always 1; the version label is the Go release the node was built with.",
	"go_info_ext":                         "Always 1; the labels are the compiler, GOARCH, GOOS and GOROOT of the build.",

	// The process on Linux, as github.com/VictoriaMetrics/metrics writes it.
	"process_cpu_seconds_system_total":              "CPU time the process spent in the kernel.",
	"process_cpu_seconds_total":                     "CPU time the process spent, user and kernel.",
	"process_cpu_seconds_user_total":                "CPU time the process spent in user space.",
	"process_major_pagefaults_total":                "Page faults that needed disk I/O.",
	"process_minor_pagefaults_total":                "Page faults served without disk I/O.",
	"process_num_threads":                           "OS threads of the process.",
	"process_resident_memory_bytes":                 "Resident set size.",
	"process_start_time_seconds":                    "When the process started, in seconds since the Unix epoch.",
	"process_virtual_memory_bytes":                  "Virtual memory size.",
	"process_virtual_memory_peak_bytes":             "Peak virtual memory size.",
	"process_resident_memory_peak_bytes":            "Peak resident set size.",
	"process_resident_memory_anon_bytes":            "Resident anonymous memory.",
	"process_resident_memory_file_bytes":            "Resident file-backed memory.",
	"process_resident_memory_shared_bytes":          "Resident shared memory.",
	"process_io_read_bytes_total":                   "Bytes read by read-like syscalls, page cache hits included.",
	"process_io_written_bytes_total":                "Bytes written by write-like syscalls.",
	"process_io_read_syscalls_total":                "Read-like syscalls.",
	"process_io_write_syscalls_total":               "Write-like syscalls.",
	"process_io_storage_read_bytes_total":           "Bytes the process caused to be read from storage.",
	"process_io_storage_written_bytes_total":        "Bytes the process caused to be written to storage.",
	"process_pressure_cpu_waiting_seconds_total":    "Time some tasks of the process's cgroup waited for a CPU (PSI some), since the node started.",
	"process_pressure_cpu_stalled_seconds_total":    "Time all tasks of the process's cgroup waited for a CPU (PSI full), since the node started.",
	"process_pressure_io_waiting_seconds_total":     "Time some tasks of the process's cgroup waited for I/O (PSI some), since the node started.",
	"process_pressure_io_stalled_seconds_total":     "Time all tasks of the process's cgroup waited for I/O (PSI full), since the node started.",
	"process_pressure_memory_waiting_seconds_total": "Time some tasks of the process's cgroup waited for memory (PSI some), since the node started.",
	"process_pressure_memory_stalled_seconds_total": "Time all tasks of the process's cgroup waited for memory (PSI full), since the node started.",
	"process_cgroup_cpu_throttled_seconds_total":    "Time the process's cgroup was throttled by its CPU quota, since the node started.",
	"process_max_fds":                               "Limit on open file descriptors (RLIMIT_NOFILE).",
	"process_open_fds":                              "Open file descriptors.",
}
