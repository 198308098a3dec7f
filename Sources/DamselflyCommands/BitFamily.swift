/// (Stub: the data-type work fills this family in.)
public enum BitFamily {
    public static func register(_ r: CommandRegistry) {}
}
