/// (Stub: the data-type work fills this family in.)
public enum SetFamily {
    public static func register(_ r: CommandRegistry) {}
}
