using Spectre.Console.Cli;

namespace Jamba.Cli.Infrastructure;

/// <summary>A minimal container for Spectre.Console.Cli: registered instances, types and factories (several per
/// service, resolved as the last one or as <c>IEnumerable&lt;T&gt;</c>), constructor injection for the rest.</summary>
internal sealed class TypeRegistrar : ITypeRegistrar
{
    private readonly Dictionary<Type, List<Func<TypeResolver, object>>> _factories = new();

    public void Register(Type service, Type implementation) => Add(service, r => r.Create(implementation));

    public void RegisterInstance(Type service, object implementation) => Add(service, _ => implementation);

    public void RegisterLazy(Type service, Func<object> factory)
    {
        var lazy = new Lazy<object>(factory);
        Add(service, _ => lazy.Value);
    }

    public ITypeResolver Build() => new TypeResolver(_factories.ToDictionary(kv => kv.Key, kv => kv.Value.ToList()));

    private void Add(Type service, Func<TypeResolver, object> factory)
    {
        if (!_factories.TryGetValue(service, out var list)) _factories[service] = list = [];
        list.Add(factory);
    }

    internal sealed class TypeResolver(Dictionary<Type, List<Func<TypeResolver, object>>> factories) : ITypeResolver
    {
        public object? Resolve(Type? type)
        {
            if (type is null) return null;
            if (factories.TryGetValue(type, out var list) && list.Count > 0) return list[^1](this);
            if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IEnumerable<>))
            {
                var element = type.GetGenericArguments()[0];
                var items = factories.TryGetValue(element, out var all) ? all.Select(f => f(this)).ToArray() : [];
                var array = Array.CreateInstance(element, items.Length);
                for (int i = 0; i < items.Length; i++) array.SetValue(items[i], i);
                return array;
            }
            return type.IsAbstract || type.IsInterface ? null : Create(type);
        }

        public object Create(Type type)
        {
            var ctor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()
                ?? throw new InvalidOperationException($"{type.Name} has no public constructor.");
            var args = ctor.GetParameters()
                .Select(p => Resolve(p.ParameterType) ?? throw new InvalidOperationException($"Cannot resolve {p.ParameterType.Name} for {type.Name}."))
                .ToArray();
            return ctor.Invoke(args);
        }
    }
}
