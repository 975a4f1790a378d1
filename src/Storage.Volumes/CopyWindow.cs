namespace Storage.Volumes;

/// <summary>
/// Keeps a copy of a segment consistent while it is written: the copier opens a window over the range it copies
/// next, which waits for the writes in flight there; writes that reach into the window wait until it closes. Writes
/// elsewhere go on. Offsets are bytes in the segment.
/// </summary>
internal sealed class CopyWindow
{
    private readonly Lock _lock = new();
    private readonly List<(long Start, long End)> _writes = [];   // in flight
    private long _start, _end;                                     // the window; empty when equal
    private TaskCompletionSource? _closed;                         // writes waiting for the window to close
    private TaskCompletionSource? _clear;                          // the copier waiting for writes in the window

    /// <summary>Waits while [start, end) reaches into the window, then counts the write in flight.</summary>
    public async ValueTask EnterAsync(long start, long end)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (!Overlaps(start, end))
                {
                    _writes.Add((start, end));
                    return;
                }
                _closed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _closed.Task;
            }
            await wait.ConfigureAwait(false);
        }
    }

    /// <summary>The write of [start, end) that <see cref="EnterAsync"/> let in has finished.</summary>
    public void Exit(long start, long end)
    {
        TaskCompletionSource? clear = null;
        lock (_lock)
        {
            _writes.Remove((start, end));
            if (_clear is not null && !_writes.Exists(w => Overlaps(w.Start, w.End)))
                (clear, _clear) = (_clear, null);
        }
        clear?.TrySetResult();
    }

    /// <summary>Opens the window over [start, end); completes when no write in flight reaches into it.</summary>
    public Task OpenAsync(long start, long end)
    {
        lock (_lock)
        {
            (_start, _end) = (start, end);
            if (!_writes.Exists(w => Overlaps(w.Start, w.End)))
                return Task.CompletedTask;
            _clear = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _clear.Task;
        }
    }

    /// <summary>Closes the window: the writes waiting on it go on.</summary>
    public void Close()
    {
        TaskCompletionSource? closed;
        lock (_lock)
        {
            (_start, _end) = (0, 0);
            (closed, _closed, _clear) = (_closed, null, null);
        }
        closed?.TrySetResult();
    }

    private bool Overlaps(long start, long end) => start < _end && _start < end;
}
