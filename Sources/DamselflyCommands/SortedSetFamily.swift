/// (Stub: the data-type work fills this family in.)
public enum SortedSetFamily {
    public static func register(_ r: CommandRegistry) {}
}
