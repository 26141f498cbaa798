//! The Lua scripts that make each step of a Redis-backed queue atomic on
//! the server: a producer's lease, the END test, the commit of a worker's
//! results with the acknowledgement of its inputs, a failure, and an
//! attempt at an entry taken over from another consumer.
//!
//! Every script reads the time from the server (`TIME`), so the clocks of
//! the machines running a job never need to agree.
//!
//! Beside each stream, `:live` counts its entries not yet acknowledged
//! (waiting or pending): producers wait while it is at the queue's
//! capacity. Every script that adds or acknowledges an entry keeps it, by
//! what `XADD` and `XACK` did, so it stays exact.

use std::sync::LazyLock;

use redis::Script;

/// `now` in milliseconds, by the server's clock.
const NOW: &str = "local t = redis.call('TIME')\n\
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}{body}"))
}

/// Registers a producer: KEYS[1] the producer set (member: producer,
/// score: when its lease ends), KEYS[2] the queue's "over" marker; ARGV[1]
/// the producer, ARGV[2] the lease in milliseconds. 0 if the queue is
/// over (its readers saw its END): nothing put now would be read.
pub(crate) static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        return 1",
    )
});

/// Renews a lease that has not yet run out: 1, or 0 if it had (the
/// producer may already have been counted as gone).
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local until_ms = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if not until_ms or tonumber(until_ms) < now then return 0 end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        return 1",
    )
});

/// Whether a queue has ended for its readers: 1 if at least one producer
/// registered, every producer has ended or let its lease run out, every
/// entry was delivered, and none is waiting for its acknowledgement; the
/// queue is then marked over, and no producer registers any more.
/// KEYS: producer set, ended set, stream, over marker; ARGV[1]: the group.
pub(crate) static ENDED: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local producers = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
        if #producers == 0 then return 0 end
        for i = 1, #producers, 2 do
            if redis.call('SISMEMBER', KEYS[2], producers[i]) == 0
                and tonumber(producers[i + 1]) >= now then
                return 0
            end
        end
        local pending = redis.call('XPENDING', KEYS[3], ARGV[1])
        if tonumber(pending[1]) > 0 then return 0 end
        local function field(list, name)
            for i = 1, #list, 2 do
                if list[i] == name then return list[i + 1] end
            end
        end
        local function split(id)
            local ms, seq = string.match(id, '(%d+)-(%d+)')
            return tonumber(ms), tonumber(seq)
        end
        local generated = field(redis.call('XINFO', 'STREAM', KEYS[3]), 'last-generated-id')
        local delivered = '0-0'
        for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[3])) do
            if field(group, 'name') == ARGV[1] then
                delivered = field(group, 'last-delivered-id')
            end
        end
        local gm, gs = split(generated)
        local dm, ds = split(delivered)
        if gm > dm or (gm == dm and gs > ds) then return 0 end
        redis.call('SET', KEYS[4], 1)
        return 1",
    )
});

/// A commit: new entries, and inputs acknowledged together with the
/// entries they produced, all at once or not at all.
///
/// KEYS[1] is the job's sequence hash; the other keys are streams, their
/// live counters and producer sets, referred to below by their index in
/// KEYS.
///
/// ARGV: the session, its commit number (a retried commit whose first try
/// went through is skipped: 0 is returned), the group, the consumer; then
/// lists, each a count followed by its records:
/// - leases to check (a producer set's index, the producer): if any has
///   run out, nothing is written and -1 is returned;
/// - inputs (stream index, live counter index, id, output count,
///   outputs): an input still held by this consumer is acknowledged and
///   its outputs are added; one taken over by another consumer (this one
///   was too slow) is left to it, and its outputs are not added, so
///   nothing is duplicated;
/// - outputs that belong to no input;
/// - releases (stream index, id, kind, order, data, failures): an entry
///   held and not processed goes back to the queue as a new entry;
/// - entries still held, whose idle time restarts (stream index, id), so
///   that no other consumer claims what this one is about to handle;
/// - streams to trim (stream index): acknowledged entries are removed, by
///   whole stream nodes;
/// - live counters whose value to return (index).
///
/// An output into a queue whose reader discarded the rest
/// (`NAME:discarded` exists) is dropped here, on purpose.
///
/// An output is (stream index, live counter index, kind, order, data).
/// Returns 1 and the counts asked for.
pub(crate) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local session, seq, group, consumer = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
        local last = tonumber(redis.call('HGET', KEYS[1], session) or '0')
        if seq <= last then return {0} end
        local i = 5
        local function take()
            i = i + 1
            return ARGV[i - 1]
        end
        for _ = 1, tonumber(take()) do
            local until_ms = redis.call('ZSCORE', KEYS[tonumber(take())], take())
            if not until_ms or tonumber(until_ms) < now then return {-1} end
        end
        redis.call('HSET', KEYS[1], session, seq)
        local live = {}
        local function count(key, n)
            live[key] = (live[key] or 0) + n
        end
        -- A queue whose reader discarded the rest takes nothing more.
        local discarded = {}
        local function add()
            local key, counter = KEYS[tonumber(take())], KEYS[tonumber(take())]
            local kind, order, data = take(), take(), take()
            if discarded[key] == nil then
                discarded[key] = redis.call('EXISTS', key .. ':discarded') == 1
            end
            if not discarded[key] then
                redis.call('XADD', key, '*', 'k', kind, 'o', order, 'd', data)
                count(counter, 1)
            end
        end
        local function skip(n)
            i = i + 5 * n
        end
        -- What this consumer holds of a stream, looked up once per stream.
        local holding = {}
        local function held(key, id)
            local mine = holding[key]
            if not mine then
                mine = {}
                for _, p in ipairs(redis.call('XPENDING', key, group, '-', '+', 1000000, consumer)) do
                    mine[p[1]] = true
                end
                holding[key] = mine
            end
            return mine[id]
        end
        local acks = {}
        for _ = 1, tonumber(take()) do
            local key, counter = KEYS[tonumber(take())], KEYS[tonumber(take())]
            local id = take()
            local outputs = tonumber(take())
            if held(key, id) then
                -- Once: an id listed twice is acknowledged and written once.
                holding[key][id] = nil
                for _ = 1, outputs do add() end
                acks[key] = acks[key] or {counter = counter}
                table.insert(acks[key], id)
            else
                skip(outputs)
            end
        end
        for key, ids in pairs(acks) do
            for first = 1, #ids, 1000 do
                local n = redis.call('XACK', key, group, unpack(ids, first, math.min(first + 999, #ids)))
                count(ids.counter, -n)
            end
        end
        for _ = 1, tonumber(take()) do add() end
        for _ = 1, tonumber(take()) do
            local key = KEYS[tonumber(take())]
            local id, kind, order, data, failures = take(), take(), take(), take(), take()
            if held(key, id) then
                holding[key][id] = nil
                if redis.call('EXISTS', key .. ':discarded') == 1 then
                    redis.call('XACK', key, group, id)
                    redis.call('DECR', key .. ':live')
                else
                    redis.call('XADD', key, '*', 'k', kind, 'o', order, 'd', data, 'f', failures)
                    redis.call('XACK', key, group, id)
                end
            end
        end
        for _ = 1, tonumber(take()) do
            local key, id = KEYS[tonumber(take())], take()
            if held(key, id) then
                redis.call('XCLAIM', key, group, consumer, 0, id, 'JUSTID')
            end
        end
        for _ = 1, tonumber(take()) do
            local key = KEYS[tonumber(take())]
            local pending = redis.call('XPENDING', key, group)
            local oldest = pending[2]
            if tonumber(pending[1]) == 0 then
                for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
                    for j = 1, #g, 2 do
                        if g[j] == 'last-delivered-id' then oldest = g[j + 1] end
                    end
                end
            end
            if oldest then redis.call('XTRIM', key, 'MINID', '~', oldest) end
        end
        for key, n in pairs(live) do
            if n ~= 0 then redis.call('INCRBY', key, n) end
        end
        local reply = {1}
        for _ = 1, tonumber(take()) do
            reply[#reply + 1] = tonumber(redis.call('GET', KEYS[tonumber(take())]) or '0')
        end
        return reply",
    )
});

/// A worker failed on an entry it held: KEYS stream, dead-letter stream,
/// live counter; ARGV group, consumer, id, failures so far (before this
/// one), most failures, queue name, error. Below the most, the entry goes
/// back to the queue as a new entry with its failures counted (returns 1);
/// at the most, it goes to the dead-letter stream (returns 2). Either way
/// it is acknowledged; 0 if another consumer had taken it over.
pub(crate) static FAIL: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
        if #redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer) == 0 then return 0 end
        local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
        local fields = {}
        for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
        local failures = tonumber(ARGV[4]) + 1
        redis.call('XACK', KEYS[1], group, id)
        if failures >= tonumber(ARGV[5]) then
            redis.call('XADD', KEYS[2], '*', 'queue', ARGV[6], 'error', ARGV[7],
                'failures', failures, 'k', fields['k'], 'o', fields['o'], 'd', fields['d'])
            redis.call('DECR', KEYS[3])
            return 2
        end
        redis.call('XADD', KEYS[1], '*', 'k', fields['k'], 'o', fields['o'], 'd', fields['d'], 'f', failures)
        return 1",
    )
});

/// A claimed entry is about to be handed out: it was taken over from a
/// consumer that held it too long, which may have died of it (a message
/// that crashes its process is never failed by an unwinding worker). Its
/// attempts are counted; past the most, it goes to the dead-letter stream.
/// KEYS stream, dead-letter stream, live counter, attempts hash; ARGV
/// group, consumer, id, most attempts, queue name. Returns 1 to hand it
/// out, 2 if it was set aside, 0 if another consumer has it now.
pub(crate) static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
        if #redis.call('XPENDING', KEYS[1], group, id, id, 1, consumer) == 0 then return 0 end
        local attempts = redis.call('HINCRBY', KEYS[4], id, 1)
        if attempts <= tonumber(ARGV[4]) then return 1 end
        local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
        local fields = {}
        for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
        redis.call('XADD', KEYS[2], '*', 'queue', ARGV[5],
            'error', 'its consumers died handling it ' .. (attempts - 1) .. ' times (their process ended without acknowledging it)',
            'failures', attempts - 1, 'k', fields['k'], 'o', fields['o'], 'd', fields['d'])
        redis.call('XACK', KEYS[1], group, id)
        redis.call('DECR', KEYS[3])
        redis.call('HDEL', KEYS[4], id)
        return 2",
    )
});
