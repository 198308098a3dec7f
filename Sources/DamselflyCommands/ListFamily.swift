/// (Stub: the data-type work fills this family in.)
public enum ListFamily {
    public static func register(_ r: CommandRegistry) {}
}
