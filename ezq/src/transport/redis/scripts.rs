//! The Lua scripts that make each step of a Redis-backed queue atomic on
//! the server: a producer's lease, the END test, the commit of a worker's
//! results with the acknowledgement of its inputs, and a failure.
//!
//! Every script reads the time from the server (`TIME`), so the clocks of
//! the machines running a job never need to agree.

use std::sync::LazyLock;

use redis::Script;

/// `now` in milliseconds, by the server's clock.
const NOW: &str = "local t = redis.call('TIME')\n\
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}{body}"))
}

/// Registers a producer: KEYS[1] the producer set (member: instance,
/// score: when its lease ends), ARGV[1] the instance, ARGV[2] the lease in
/// milliseconds.
pub(crate) static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
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
/// entry was delivered, and none is waiting for its acknowledgement.
/// KEYS: producer set, ended set, stream; ARGV[1]: the group.
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
        return 1",
    )
});

/// A commit: new entries, and inputs acknowledged together with the
/// entries they produced, all at once or not at all.
///
/// KEYS[1] is the job's sequence hash; the other keys are streams and
/// producer sets, referred to below by their index in KEYS.
///
/// ARGV: the session, its commit number (a retried commit whose first try
/// went through is skipped: 0 is returned), the group, the consumer, the
/// instance; then lists, each a count followed by its records:
/// - leases to check (a producer set's index): if this instance's lease on
///   any has run out, nothing is written and -1 is returned;
/// - inputs (stream index, id, output count, outputs): an input still
///   held by this consumer is acknowledged and its outputs are added; one
///   taken over by another consumer (this one was too slow) is left to
///   it, and its outputs are not added, so nothing is duplicated;
/// - outputs that belong to no input;
/// - releases (stream index, id, kind, order, data, failures): an entry
///   held and not processed goes back to the queue as a new entry;
/// - streams to trim (stream index): acknowledged entries are removed;
/// - streams whose length to return.
///
/// An output is (stream index, kind, order, data). Returns 1 and the
/// lengths asked for.
pub(crate) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    script(
        "local session, seq, group, consumer, instance = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
        local last = tonumber(redis.call('HGET', KEYS[1], session) or '0')
        if seq <= last then return {0} end
        local i = 6
        local function take()
            i = i + 1
            return ARGV[i - 1]
        end
        for _ = 1, tonumber(take()) do
            local until_ms = redis.call('ZSCORE', KEYS[tonumber(take())], instance)
            if not until_ms or tonumber(until_ms) < now then return {-1} end
        end
        redis.call('HSET', KEYS[1], session, seq)
        local function add()
            local key = KEYS[tonumber(take())]
            redis.call('XADD', key, '*', 'k', take(), 'o', take(), 'd', take())
        end
        local function skip(n)
            i = i + 4 * n
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
            local key = KEYS[tonumber(take())]
            local id = take()
            local outputs = tonumber(take())
            if held(key, id) then
                -- Once: an id listed twice is acknowledged and written once.
                holding[key][id] = nil
                for _ = 1, outputs do add() end
                acks[key] = acks[key] or {}
                table.insert(acks[key], id)
            else
                skip(outputs)
            end
        end
        for key, ids in pairs(acks) do
            for first = 1, #ids, 1000 do
                redis.call('XACK', key, group, unpack(ids, first, math.min(first + 999, #ids)))
            end
        end
        for _ = 1, tonumber(take()) do add() end
        for _ = 1, tonumber(take()) do
            local key = KEYS[tonumber(take())]
            local id, kind, order, data, failures = take(), take(), take(), take(), take()
            if held(key, id) then
                redis.call('XADD', key, '*', 'k', kind, 'o', order, 'd', data, 'f', failures)
                redis.call('XACK', key, group, id)
                holding[key][id] = nil
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
        local reply = {1}
        for _ = 1, tonumber(take()) do
            reply[#reply + 1] = redis.call('XLEN', KEYS[tonumber(take())])
        end
        return reply",
    )
});

/// A worker failed on an entry it held: KEYS stream, dead-letter stream;
/// ARGV group, consumer, id, failures so far (before this one), most
/// failures, queue name, error. Below the most, the entry goes back to the
/// queue as a new entry with its failures counted (returns 1); at the
/// most, it goes to the dead-letter stream (returns 2). Either way it is
/// acknowledged; 0 if another consumer had taken it over.
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
            return 2
        end
        redis.call('XADD', KEYS[1], '*', 'k', fields['k'], 'o', fields['o'], 'd', fields['d'], 'f', failures)
        return 1",
    )
});
