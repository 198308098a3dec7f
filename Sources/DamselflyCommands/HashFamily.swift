/// (Stub: the data-type work fills this family in.)
public enum HashFamily {
    public static func register(_ r: CommandRegistry) {}
}
