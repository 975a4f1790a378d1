namespace Storage.Consensus.Tests.Simulation;

// Fault injection during the chaos phase, and healing afterwards.
internal sealed partial class SimCluster
{
    private long NextFaultDelay() => 1 + (long)(-Math.Log(1 - _rng.NextDouble()) * _o.FaultInterval);

    private void InjectFault()
    {
        var up = All.Where(n => n.Up).ToList();
        int pick = _rng.Next(12);
        switch (pick)
        {
            case 0 or 1 or 2:
                Partition();
                break;
            case 3 or 4 when up.Count > 0:
                var victim = up[_rng.Next(up.Count)];
                Crash(victim);
                ScheduleRestart(victim);
                break;
            case 5 or 6 when up.Count > 0:
                // Crash inside the next Ready that must be fsynced: its writes are torn or lost.
                up[_rng.Next(up.Count)].CrashAtNextSync = true;
                break;
            case 7 when _o.Wipes && up.Count > 0 && AllMembersWhole():
                var wiped = up[_rng.Next(up.Count)];
                Wipe(wiped);
                ScheduleRestart(wiped);
                break;
            case 8 when _o.Corruption && up.Count > 0 && AllMembersWhole():
                var bad = up[_rng.Next(up.Count)];
                if (Corrupt(bad))
                {
                    Crash(bad);
                    ScheduleRestart(bad);
                }
                break;
            case 9 when up.Count > 0:
                Pause(up[_rng.Next(up.Count)], _rng.Next(5_000, 40_000));
                break;
            case 10 when _o.Reconfigure:
                Reconfigure();
                break;
            default:
                if (_cut.Count > 0)
                {
                    _cut.Clear();
                    Trace("heal");
                }
                break;
        }
        foreach (var n in All.Where(n => !n.Up && !n.RestartScheduled))
            ScheduleRestart(n);
    }

    /// <summary>The leader removes a member, or adds back one that is missing (one change at a time).</summary>
    private void Reconfigure()
    {
        var leader = All.FirstOrDefault(n => n.Up && n.Core!.IsLeader && !n.Asleep);
        if (leader is null)
            return;
        var config = leader.Core!.Config;
        var missing = All.FirstOrDefault(n => !config.ContainsId(n.Id));
        Configuration next;
        if (missing is not null)
            next = new Configuration([.. config.Members, new Member(missing.Id, missing.Incarnation)]);
        else if (config.Members.Count >= 3)
        {
            var others = config.Members.Where(m => m.Id != leader.Id).ToList();
            var victim = others[_rng.Next(others.Count)];
            next = new Configuration(config.Members.Where(m => m != victim));
        }
        else
            return;
        if (leader.Core.ProposeConfigChange(next))
        {
            Count("reconfigurations");
            Trace($"reconfigure {config} -> {next} at {leader.Id}");
            Drain(leader);
        }
    }

    private void ScheduleRestart(SimNode n)
    {
        n.RestartScheduled = true;
        Schedule(_now + _rng.Next(2_000, 40_000), new Ev { Kind = EvKind.Restart, Node = n.Id });
    }

    /// <summary>
    /// Losing a disk is tolerated one replica at a time: only once the previous loss is repaired, that is
    /// the latest chosen configuration names every replica's current incarnation and every replica knows
    /// it is chosen (otherwise a replica may still need a quorum of the old configuration, one of whose
    /// acceptors is gone).
    /// </summary>
    private bool AllMembersWhole()
    {
        var config = LearnedConfig;
        return All.All(n => n.Up && config.Contains(new Member(n.Id, n.Incarnation)) && n.Core!.Config.Equals(config));
    }

    private void Partition()
    {
        _cut.Clear();
        var ids = All.Select(n => n.Id).ToList();
        int kind = _rng.Next(3);
        if (kind == 0)
        {
            int alone = ids[_rng.Next(ids.Count)];
            foreach (int other in ids.Where(i => i != alone))
            {
                _cut.Add((alone, other));
                _cut.Add((other, alone));
            }
        }
        else if (kind == 1)
        {
            var side = ids.Where(_ => _rng.Next(2) == 0).ToHashSet();
            foreach (int a in ids)
                foreach (int b in ids)
                    if (side.Contains(a) != side.Contains(b))
                        _cut.Add((a, b));
        }
        else
        {
            int a = ids[_rng.Next(ids.Count)], b = ids[_rng.Next(ids.Count)];
            if (a != b)
                _cut.Add((a, b)); // one direction only
        }
        Count("partitions");
        Trace("partition " + string.Join(",", _cut.Select(c => $"{c.From}>{c.To}")));
        Schedule(_now + _rng.Next(5_000, 60_000), new Ev { Kind = EvKind.Heal });
    }

    private void StartHealing()
    {
        _healing = true;
        _cut.Clear();
        _dropRate = 0;
        _dupRate = 0;
        _longDelayRate = 0;
        foreach (var n in All)
        {
            n.CrashAtNextSync = false;
            if (!n.Up)
                Boot(n, bootstrap: false);
        }
        Trace("healing");
    }
}
