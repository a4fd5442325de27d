using Microsoft.ML;
using Microsoft.ML.Data;

namespace Jamba.MLNet.Internal;

/// <summary>
/// The output of <c>Transform</c>: the input's columns plus the step's, computed lazily as a cursor advances. A cursor
/// reads the input twice in step: a look-ahead cursor over the prompt columns keeps up to <c>BatchSize</c> rows
/// submitted to the engine (which batches their decode steps), and the main cursor serves the pass-through columns of
/// the current row. Rows are only generated when a cursor asks for one of the step's columns.
/// </summary>
internal sealed class GenerationDataView : IDataView
{
    private readonly StepSettings _settings;
    private readonly IDataView _input;
    private readonly int[] _inputIndices;
    private readonly IReadOnlyList<(string Name, OutputKind Kind)> _added;

    public GenerationDataView(StepSettings settings, IDataView input)
    {
        _settings = settings;
        _input = input;
        _inputIndices = StepSchema.Validate(settings, input.Schema);
        _added = StepSchema.Added(settings);
        Schema = StepSchema.Output(settings, input.Schema);
    }

    public DataViewSchema Schema { get; }

    public bool CanShuffle => false;

    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var active = new bool[Schema.Count];
        foreach (var c in columnsNeeded) active[c.Index] = true;
        int first = _input.Schema.Count;
        var mainColumns = Enumerable.Range(0, first).Where(i => active[i]).Select(i => _input.Schema[i]).ToList();
        bool generate = Enumerable.Range(first, Schema.Count - first).Any(i => active[i]);
        var main = _input.GetRowCursor(mainColumns);
        DataViewRowCursor? ahead = null;
        try
        {
            if (generate) ahead = _input.GetRowCursor(_inputIndices.Select(i => _input.Schema[i]));
            return new Cursor(this, main, ahead, active);
        }
        catch
        {
            ahead?.Dispose();
            main.Dispose();
            throw;
        }
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly GenerationDataView _parent;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _ahead;
        private readonly ValueGetter<ReadOnlyMemory<char>>[] _aheadGetters = [];
        private readonly bool[] _active;
        private readonly Delegate?[] _getters;
        private readonly Queue<Task<RowResult>> _pending = new();
        private readonly CancellationTokenSource _cts = new();
        private ModelBinding? _binding;
        private Task<RowResult>? _currentTask;
        private RowResult? _current;
        private long _position = -1;
        private bool _aheadDone;
        private bool _disposed;

        public Cursor(GenerationDataView parent, DataViewRowCursor main, DataViewRowCursor? ahead, bool[] active)
        {
            _parent = parent;
            _main = main;
            _ahead = ahead;
            _active = active;
            if (ahead != null)
                _aheadGetters = parent._inputIndices.Select(i => ahead.GetGetter<ReadOnlyMemory<char>>(parent._input.Schema[i])).ToArray();
            int first = parent._input.Schema.Count;
            _getters = new Delegate?[parent.Schema.Count];
            for (int i = first; i < _getters.Length; i++)
                if (active[i]) _getters[i] = StepSchema.Getter(parent._added[i - first].Kind, Current);
        }

        public override DataViewSchema Schema => _parent.Schema;
        public override long Position => _position;
        public override long Batch => _main.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
            if (column.Index < _parent._input.Schema.Count) return _main.GetGetter<TValue>(_parent._input.Schema[column.Index]);
            return StepSchema.Typed<TValue>(_getters[column.Index]!, column);
        }

        public override bool MoveNext()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _current = null;
            _currentTask = null;
            if (!_main.MoveNext()) return false;
            _position++;
            if (_ahead != null)
            {
                Fill();
                if (_pending.Count == 0)
                    throw new InvalidOperationException("The input data view returned fewer rows to a second cursor than to the first; Jamba text generation needs a repeatable input.");
                _currentTask = _pending.Dequeue();
            }
            return true;
        }

        /// <summary>Keeps the current row and up to <c>BatchSize - 1</c> following rows submitted.</summary>
        private void Fill()
        {
            int window = _parent._settings.Options.BatchSize;
            while (_pending.Count < window && !_aheadDone)
            {
                if (!_ahead!.MoveNext())
                {
                    _aheadDone = true;
                    break;
                }
                var values = StepSchema.ReadValues(_aheadGetters);
                _binding ??= ModelBindings.Get(_parent._settings.Options, _cts.Token);
                var binding = _binding;
                var settings = _parent._settings;
                var token = _cts.Token;
                _pending.Enqueue(Task.Run(() => settings.RunAsync(binding, values, token), token));
            }
        }

        private RowResult Current()
        {
            if (_current != null) return _current;
            var task = _currentTask ?? throw new InvalidOperationException("The cursor is not on a row.");
            try
            {
                _current = task.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is not OperationCanceledException || !_cts.IsCancellationRequested)
            {
                throw new InvalidOperationException($"Jamba text generation failed for row {_position}: {e.Message}", e);
            }
            return _current;
        }

        protected override void Dispose(bool disposing)
        {
            if (_disposed) return;
            _disposed = true;
            if (disposing)
            {
                _cts.Cancel();
                foreach (var t in _pending) _ = t.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                if (_currentTask is { } c) _ = c.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                _pending.Clear();
                _ahead?.Dispose();
                _main.Dispose();
                _cts.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>The row-to-row mapper behind prediction engines: one row at a time, computed when a step column is read.</summary>
internal sealed class GenerationRowMapper : IRowToRowMapper
{
    private readonly StepSettings _settings;
    private readonly int[] _inputIndices;
    private readonly IReadOnlyList<(string Name, OutputKind Kind)> _added;

    public GenerationRowMapper(StepSettings settings, DataViewSchema inputSchema)
    {
        _settings = settings;
        _inputIndices = StepSchema.Validate(settings, inputSchema);
        _added = StepSchema.Added(settings);
        InputSchema = inputSchema;
        OutputSchema = StepSchema.Output(settings, inputSchema);
    }

    public DataViewSchema InputSchema { get; }
    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var needed = new SortedSet<int>();
        foreach (var c in dependingColumns)
        {
            if (c.Index < InputSchema.Count) needed.Add(c.Index);
            else needed.UnionWith(_inputIndices);
        }
        return needed.Select(i => InputSchema[i]).ToList();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        var active = new bool[OutputSchema.Count];
        foreach (var c in activeColumns) active[c.Index] = true;
        return new Row(this, input, active);
    }

    private sealed class Row : DataViewRow
    {
        private readonly GenerationRowMapper _parent;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly Delegate?[] _getters;
        private readonly ValueGetter<ReadOnlyMemory<char>>[]? _inputGetters;
        private long _cachedPosition = -1;
        private RowResult? _current;

        public Row(GenerationRowMapper parent, DataViewRow input, bool[] active)
        {
            _parent = parent;
            _input = input;
            _active = active;
            int first = parent.InputSchema.Count;
            _getters = new Delegate?[active.Length];
            for (int i = first; i < active.Length; i++)
                if (active[i]) _getters[i] = StepSchema.Getter(parent._added[i - first].Kind, Current);
            if (_getters.Any(g => g != null))
                _inputGetters = parent._inputIndices.Select(i => input.GetGetter<ReadOnlyMemory<char>>(input.Schema[i])).ToArray();
        }

        public override DataViewSchema Schema => _parent.OutputSchema;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"Column '{column.Name}' is not active in this row.");
            if (column.Index < _parent.InputSchema.Count) return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            return StepSchema.Typed<TValue>(_getters[column.Index]!, column);
        }

        private RowResult Current()
        {
            long position = _input.Position;
            if (_current != null && _cachedPosition == position) return _current;
            var values = StepSchema.ReadValues(_inputGetters!);
            var binding = ModelBindings.Get(_parent._settings.Options);
            _current = _parent._settings.RunAsync(binding, values, CancellationToken.None).GetAwaiter().GetResult();
            _cachedPosition = position;
            return _current;
        }

    }
}
